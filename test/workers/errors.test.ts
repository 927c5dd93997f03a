/** Bad input gets a stable error code and a one-line message (the broker alone; agent-side errors: test/e2e/errors.test.ts). */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ADMIN, type RawSocket, api, newMesh, rawNode } from "./harness.js";
import type { BrokerControlMessage } from "../../shared/protocol.js";

const mesh = newMesh();
let steady: RawSocket<BrokerControlMessage>;

beforeAll(async () => {
  // A node offering `cat` only, so that a work type it lacks can be named.
  steady = await rawNode({ mesh, token: ADMIN }, "steady", ["cat"]);
});

afterAll(() => {
  steady.close();
});

type ErrorReply = { error: { code: string; message: string } };

describe("HTTP errors", () => {
  it.each([
    ["no token", "GET", "/status", { token: null }, 401, "unauthorized"],
    ["a wrong token", "GET", "/status", { token: "nope" }, 401, "unauthorized"],
    ["an unknown work type", "POST", "/units?worktype=nosuch", { body: "x" }, 400, "unknown_worktype"],
    ["no work type", "POST", "/units", { body: "x" }, 400, "bad_request"],
    [
      "a work type the target node lacks",
      "POST",
      "/units?worktype=sh&node=steady",
      { body: "x" },
      400,
      "node_lacks_worktype",
    ],
    ["a path-like unit id", "GET", "/units/..%2F..%2Fx", {}, 400, "bad_unit_id"],
    ["an unknown unit", "GET", "/units/ZZZZZZZZ", {}, 404, "unknown_unit"],
    ["results of an unknown unit", "GET", "/units/ZZZZZZZZ/results", {}, 404, "unknown_unit"],
    ["cancel of an unknown unit", "POST", "/units/ZZZZZZZZ/cancel", {}, 404, "unknown_unit"],
    ["a negative offset", "GET", "/units/ZZZZZZZZ/results?offset=-1", {}, 400, "bad_offset"],
    ["a huge offset", "GET", "/units/ZZZZZZZZ/results?offset=99999999999999999999", {}, 400, "bad_offset"],
    ["an unknown route", "GET", "/nowhere", {}, 404, "unknown_route"],
    ["a plain GET of the control socket", "GET", "/connect?node=x", {}, 400, "bad_request"],
  ] as const)("%s", async (_name, method, path, options, status, code) => {
    const reply = await api<ErrorReply>(mesh, method, path, options);
    expect(reply.status).toBe(status);
    expect(reply.body.error.code).toBe(code);
    expect(reply.body.error.message).toMatch(/^[^\n]+$/);
  });

  it("a unit for a node not seen yet, given a ttl, is accepted and waits for it", async () => {
    const reply = await api<{ state: string; targetNode: string }>(
      mesh,
      "POST",
      "/units?worktype=cat&node=later&ttl=1h",
      { body: "ok" },
    );
    expect(reply.status).toBe(201);
    expect(reply.body).toMatchObject({ state: "Pending", targetNode: "later" });
  });
});
