import { describe, expect, it } from "vitest";
import { ERROR_STATUS, type ErrorCode, MeshError, fail, isErrorCode, ok, unwrap } from "../../shared/errors.js";

const CODES = Object.keys(ERROR_STATUS) as ErrorCode[];

describe("ERROR_STATUS", () => {
  it("has codes", () => {
    expect(CODES.length).toBeGreaterThan(0);
  });

  it.each(CODES)("%s maps to a 4xx or 5xx status", (code) => {
    const status = ERROR_STATUS[code];
    expect(Number.isInteger(status)).toBe(true);
    expect(status).toBeGreaterThanOrEqual(400);
    expect(status).toBeLessThan(600);
  });

  it("maps a few codes to their expected statuses", () => {
    expect(ERROR_STATUS.bad_request).toBe(400);
    expect(ERROR_STATUS.unauthorized).toBe(401);
    expect(ERROR_STATUS.forbidden).toBe(403);
    expect(ERROR_STATUS.unknown_unit).toBe(404);
    expect(ERROR_STATUS.illegal_transition).toBe(409);
    expect(ERROR_STATUS.unit_released).toBe(410);
    expect(ERROR_STATUS.frame_too_large).toBe(413);
    expect(ERROR_STATUS.unsupported_media_type).toBe(415);
    expect(ERROR_STATUS.internal).toBe(500);
  });
});

describe("MeshError", () => {
  it.each(CODES)("carries code %s and its status", (code) => {
    const error = new MeshError(code, "something went wrong");
    expect(error).toBeInstanceOf(Error);
    expect(error.name).toBe("MeshError");
    expect(error.code).toBe(code);
    expect(error.status).toBe(ERROR_STATUS[code]);
    expect(error.message).toBe("something went wrong");
  });

  it("toBody has exactly { error: { code, message } }", () => {
    const body = new MeshError("unknown_unit", "no unit abc").toBody();
    expect(body).toStrictEqual({ error: { code: "unknown_unit", message: "no unit abc" } });
    expect(Object.keys(body)).toEqual(["error"]);
    expect(Object.keys(body.error).sort()).toEqual(["code", "message"]);
  });

  it("keeps a cause", () => {
    const cause = new Error("root");
    expect(new MeshError("internal", "wrapped", { cause }).cause).toBe(cause);
  });
});

describe("isErrorCode", () => {
  it("accepts every code", () => {
    for (const code of CODES) expect(isErrorCode(code)).toBe(true);
  });
  it.each([["nope"], [""], ["toString"], ["__proto__"], ["hasOwnProperty"], [400], [null], [undefined], [{}]])(
    "rejects %j",
    (value) => {
      expect(isErrorCode(value)).toBe(false);
    },
  );
});

describe("Result helpers", () => {
  it("ok and fail build the two shapes", () => {
    expect(ok(5)).toStrictEqual({ ok: true, value: 5 });
    expect(fail("bad_request", "nope")).toStrictEqual({ ok: false, error: { code: "bad_request", message: "nope" } });
  });

  it("unwrap returns the value of ok", () => {
    expect(unwrap(ok("x"))).toBe("x");
  });

  it.each(CODES)("unwrap throws MeshError with code %s", (code) => {
    let thrown: unknown;
    try {
      unwrap(fail(code, `failed with ${code}`));
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(MeshError);
    const error = thrown as MeshError;
    expect(error.code).toBe(code);
    expect(error.status).toBe(ERROR_STATUS[code]);
    expect(error.message).toBe(`failed with ${code}`);
  });
});
