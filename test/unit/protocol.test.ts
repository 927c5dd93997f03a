import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { type Result, isErrorCode } from "../../shared/errors.js";
import {
  MAX_TEXT_FRAME,
  PROTOCOL_VERSION,
  decodeAgentControl,
  decodeAgentData,
  decodeBrokerControl,
  decodeBrokerData,
  encode,
} from "../../shared/protocol.js";

type Decoder = (text: string) => Result<unknown>;
const DECODERS: [string, Decoder][] = [
  ["decodeAgentControl", decodeAgentControl],
  ["decodeBrokerControl", decodeBrokerControl],
  ["decodeAgentData", decodeAgentData],
  ["decodeBrokerData", decodeBrokerData],
];

const versions = { agent: "0.1.0", node: "v20.18.1", ansibleRunner: null, podman: "4.9.3", podmanUsable: true };
const hello = {
  type: "hello",
  protocol: PROTOCOL_VERSION,
  nodeId: "node-1",
  workTypes: [{ worktype: "ansible-runner", verifySignature: false, allowRuntimeParams: true }],
  capacity: 4,
  tags: { zone: "eu" },
  versions,
  units: ["abcDEF12"],
};
const reject = { type: "reject", unit: "abcDEF12", error: { code: "at_capacity", message: "full" } };
const welcome = { type: "welcome", nodeId: "node-1", pingIntervalMs: 30000 };
const assign = { type: "assign", unitId: "abcDEF12", worktype: "echo" };
const brokerError = { type: "error", error: { code: "not_assigned", message: "no" } };
const attach = { type: "attach", protocol: PROTOCOL_VERSION, nodeId: "node-1" };
const pull = { type: "payload-pull", offset: 0, length: 1024 };
const started = { type: "started", pid: 1234 };
const finished = { type: "finished", exitCode: 0, signal: null, resultsSize: 10, canceled: false };
const attached = {
  type: "attached",
  unit: {
    id: "abcDEF12",
    mesh: "default",
    worktype: "echo",
    params: { params: "-v" },
    payloadSize: 5,
    signature: null,
    targetNode: null,
  },
  state: "Pending",
  resultsOffset: 0,
  cancel: false,
  exitRecorded: false,
};
const ack = { type: "results-ack", offset: 4096 };

function expectOk(result: Result<unknown>, value: unknown): void {
  expect(result).toEqual({ ok: true, value });
}

function expectCode(result: Result<unknown>, code: string): void {
  expect(result.ok).toBe(false);
  if (!result.ok) {
    expect(result.error.code).toBe(code);
    expect(typeof result.error.message).toBe("string");
  }
}

const j = (value: unknown) => JSON.stringify(value);

describe("valid messages decode", () => {
  it.each([
    ["hello", hello],
    [
      "hello with no work types/units and null podman",
      { ...hello, workTypes: [], units: [], versions: { ...versions, podman: null, podmanUsable: false } },
    ],
    ["reject", reject],
  ])("agent control: %s", (_, message) => {
    expectOk(decodeAgentControl(j(message)), message);
  });

  it.each([
    ["welcome", welcome],
    ["assign", assign],
    ["error", brokerError],
  ])("broker control: %s", (_, message) => {
    expectOk(decodeBrokerControl(j(message)), message);
  });

  it.each([
    ["attach", attach],
    ["payload-pull", pull],
    ["started", started],
    ["started with null pid", { type: "started", pid: null }],
    ["finished", finished],
    [
      "finished by signal with detail",
      { type: "finished", exitCode: null, signal: "SIGKILL", resultsSize: 0, canceled: true, detail: "x" },
    ],
    ["finished at MAX_SAFE_INTEGER", { ...finished, resultsSize: Number.MAX_SAFE_INTEGER }],
  ])("agent data: %s", (_, message) => {
    expectOk(decodeAgentData(j(message)), message);
  });

  it.each([
    ["attached", attached],
    ["attached Released with cancel", { ...attached, state: "Released", cancel: true }],
    ["results-ack", ack],
    ["cancel", { type: "cancel" }],
    ["closed", { type: "closed", state: "Succeeded", exitRecorded: true }],
    ["closed before the exit was heard", { type: "closed", state: "Failed", exitRecorded: false }],
    ["error", brokerError],
  ])("broker data: %s", (_, message) => {
    expectOk(decodeBrokerData(j(message)), message);
  });

  it("decodes what encode produces", () => {
    expectOk(decodeAgentControl(encode(hello as Parameters<typeof encode>[0])), hello);
  });

  it("accepts node ids of 1 and 64 characters", () => {
    expect(decodeBrokerControl(j({ ...welcome, nodeId: "a" })).ok).toBe(true);
    expect(decodeBrokerControl(j({ ...welcome, nodeId: "a".repeat(64) })).ok).toBe(true);
    expect(decodeBrokerControl(j({ ...welcome, nodeId: "A0._-z" })).ok).toBe(true);
  });
});

describe("malformed text", () => {
  it.each(DECODERS)("%s: non-JSON is bad_message", (_, decode) => {
    for (const text of ["", "{", "hello", "{'type':'hello'}", "ping", "[1,"]) expectCode(decode(text), "bad_message");
  });

  it.each(DECODERS)("%s: JSON that is not a typed message object is bad_message", (_, decode) => {
    for (const text of ["null", "1", '"hello"', "[]", "true", "{}"]) expectCode(decode(text), "bad_message");
  });

  it.each(DECODERS)("%s: unknown type is bad_message", (_, decode) => {
    expectCode(decode(j({ type: "nope" })), "bad_message");
  });

  it("a message of the other socket or direction is bad_message", () => {
    expectCode(decodeAgentControl(j(welcome)), "bad_message");
    expectCode(decodeBrokerControl(j(hello)), "bad_message");
    expectCode(decodeAgentData(j(attached)), "bad_message");
    expectCode(decodeBrokerData(j(attach)), "bad_message");
    expectCode(decodeAgentControl(j(attach)), "bad_message");
  });
});

describe("invalid fields are bad_message", () => {
  const without = (o: Record<string, unknown>, key: string) =>
    Object.fromEntries(Object.entries(o).filter(([k]) => k !== key));

  it.each(Object.keys(hello).filter((k) => k !== "type"))("hello without %s", (key) => {
    expectCode(decodeAgentControl(j(without(hello, key))), "bad_message");
  });

  it.each(Object.keys(finished).filter((k) => k !== "type"))("finished without %s", (key) => {
    expectCode(decodeAgentData(j(without(finished, key))), "bad_message");
  });

  it.each(Object.keys(attached).filter((k) => k !== "type"))("attached without %s", (key) => {
    expectCode(decodeBrokerData(j(without(attached, key))), "bad_message");
  });

  it.each(["../x", "", "a".repeat(65), "-lead", ".hidden", "a/b", "a b", "nöde", 5, null])(
    "bad node id %j",
    (nodeId) => {
      expectCode(decodeAgentControl(j({ ...hello, nodeId })), "bad_message");
      expectCode(decodeBrokerControl(j({ ...welcome, nodeId })), "bad_message");
      expectCode(decodeAgentData(j({ ...attach, nodeId })), "bad_message");
    },
  );

  it.each(["abc", "abcDEF123", "abcDEF1!", "../abcde", "", "abc DEF1", 12345678])("bad unit id %j", (id) => {
    expectCode(decodeAgentControl(j({ ...reject, unit: id })), "bad_message");
    expectCode(decodeAgentControl(j({ ...hello, units: [id] })), "bad_message");
    expectCode(decodeBrokerControl(j({ ...assign, unitId: id })), "bad_message");
    expectCode(decodeBrokerData(j({ ...attached, unit: { ...attached.unit, id } })), "bad_message");
  });

  it.each([-1, 1.5, Number.MAX_SAFE_INTEGER + 1, "0"])("bad offset %j", (offset) => {
    expectCode(decodeAgentData(j({ ...pull, offset })), "bad_message");
    expectCode(decodeAgentData(j({ ...finished, resultsSize: offset })), "bad_message");
    expectCode(decodeBrokerData(j({ ...ack, offset })), "bad_message");
    expectCode(decodeBrokerData(j({ ...attached, resultsOffset: offset })), "bad_message");
    expectCode(decodeBrokerData(j({ ...attached, unit: { ...attached.unit, payloadSize: offset } })), "bad_message");
  });

  it("payload-pull length must be positive and at most 16 MiB", () => {
    expectCode(decodeAgentData(j({ ...pull, length: 0 })), "bad_message");
    expectCode(decodeAgentData(j({ ...pull, length: -5 })), "bad_message");
    expectCode(decodeAgentData(j({ ...pull, length: (16 << 20) + 1 })), "bad_message");
    expect(decodeAgentData(j({ ...pull, length: 16 << 20 })).ok).toBe(true);
  });

  it("capacity must be 1..100000", () => {
    expectCode(decodeAgentControl(j({ ...hello, capacity: 0 })), "bad_message");
    expectCode(decodeAgentControl(j({ ...hello, capacity: 100_001 })), "bad_message");
    expectCode(decodeAgentControl(j({ ...hello, capacity: 1.5 })), "bad_message");
  });

  it("bad work type advertisement", () => {
    const bad = { worktype: "../x", verifySignature: false, allowRuntimeParams: false };
    expectCode(decodeAgentControl(j({ ...hello, workTypes: [bad] })), "bad_message");
    expectCode(decodeAgentControl(j({ ...hello, workTypes: [{ worktype: "ok" }] })), "bad_message");
  });

  it("error bodies must carry a known code and a message", () => {
    expectCode(decodeBrokerControl(j({ type: "error", error: { code: "made_up", message: "x" } })), "bad_message");
    expectCode(decodeBrokerControl(j({ type: "error", error: { code: "__proto__", message: "x" } })), "bad_message");
    expectCode(decodeBrokerData(j({ type: "error", error: { code: "internal" } })), "bad_message");
    expectCode(decodeAgentControl(j({ ...reject, error: { code: "nope", message: "x" } })), "bad_message");
  });

  it("unknown states are bad_message", () => {
    expectCode(decodeBrokerData(j({ type: "closed", state: "Done", exitRecorded: true })), "bad_message");
    expectCode(decodeBrokerData(j({ ...attached, state: "pending" })), "bad_message");
  });

  it("finished detail is at most 1024 characters", () => {
    expect(decodeAgentData(j({ ...finished, detail: "x".repeat(1024) })).ok).toBe(true);
    expectCode(decodeAgentData(j({ ...finished, detail: "x".repeat(1025) })), "bad_message");
  });

  it("params must map strings to strings", () => {
    expectCode(decodeBrokerData(j({ ...attached, unit: { ...attached.unit, params: { a: 1 } } })), "bad_message");
  });

  it("the message names where the problem is", () => {
    const result = decodeBrokerControl(j({ ...welcome, nodeId: "../x" }));
    expect(!result.ok && result.error.message).toMatch(/nodeId/);
  });
});

describe("size limit", () => {
  it.each(DECODERS)("%s: text over MAX_TEXT_FRAME is frame_too_large", (_, decode) => {
    expectCode(decode("x".repeat(MAX_TEXT_FRAME + 1)), "frame_too_large");
    // Even well-formed JSON is refused before parsing.
    const padded = j({ type: "cancel" }).padEnd(MAX_TEXT_FRAME + 1, " ");
    expectCode(decode(padded), "frame_too_large");
  });

  it("text of exactly MAX_TEXT_FRAME is parsed", () => {
    const text = j({ type: "cancel" }).padEnd(MAX_TEXT_FRAME, " ");
    expect(text.length).toBe(MAX_TEXT_FRAME);
    expectOk(decodeBrokerData(text), { type: "cancel" });
  });
});

describe("decoders never throw", () => {
  function checkShape(result: Result<unknown>): void {
    expect(typeof result).toBe("object");
    if (result.ok) {
      expect(Object.keys(result).sort()).toEqual(["ok", "value"]);
    } else {
      expect(Object.keys(result).sort()).toEqual(["error", "ok"]);
      expect(isErrorCode(result.error.code)).toBe(true);
      expect(["bad_message", "frame_too_large"]).toContain(result.error.code);
      expect(typeof result.error.message).toBe("string");
    }
  }

  const safeStringify = (value: unknown): string => {
    try {
      return JSON.stringify(value) ?? String(value);
    } catch {
      return String(value);
    }
  };

  const typed = fc.record(
    {
      type: fc.constantFrom(
        "hello",
        "reject",
        "welcome",
        "assign",
        "error",
        "attach",
        "payload-pull",
        "started",
        "finished",
        "attached",
        "results-ack",
        "cancel",
        "closed",
      ),
    },
    { requiredKeys: ["type"] },
  );
  const messageLike = fc
    .tuple(typed, fc.dictionary(fc.string({ maxLength: 12 }), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 6 }))
    .map(([t, rest]) => ({ ...rest, ...t }));

  it.each(DECODERS)("%s: arbitrary strings", (_, decode) => {
    fc.assert(
      fc.property(fc.string({ maxLength: 200 }), (text) => checkShape(decode(text))),
      { numRuns: 300 },
    );
  });

  it.each(DECODERS)("%s: arbitrary JSON", (_, decode) => {
    fc.assert(
      fc.property(fc.json({ maxDepth: 4 }), (text) => checkShape(decode(text))),
      { numRuns: 300 },
    );
  });

  it.each(DECODERS)("%s: arbitrary values stringified", (_, decode) => {
    fc.assert(
      fc.property(fc.anything({ maxDepth: 3 }), (value) => checkShape(decode(safeStringify(value)))),
      { numRuns: 300 },
    );
  });

  it.each(DECODERS)("%s: objects with a protocol type and random fields", (_, decode) => {
    fc.assert(
      fc.property(messageLike, (value) => checkShape(decode(JSON.stringify(value)))),
      { numRuns: 300 },
    );
  });
});
