/**
 * HTTP fuzzing against the real broker: random methods, paths, queries, headers and bodies, built
 * around the real routes so they get past routing. Every answer is a success or a typed JSON error
 * whose status matches its code, never a 5xx; and a unit submitted afterwards still runs.
 */
import fc from "fast-check";
import { request } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ERROR_STATUS, type ErrorCode } from "../../shared/errors.js";
import { type RunningAgent, api, broker, newMesh, sh, startAgent } from "./harness.js";

const mesh = newMesh();
let agent: RunningAgent;
let unitId = "";

beforeAll(async () => {
  agent = await startAgent({ mesh, nodeId: "fuzzed", config: "- work-command: {worktype: cat, command: cat}\n" });
  const created = await api<{ id: string }>(mesh, "POST", "/units?worktype=cat", { body: "seed" });
  unitId = created.body.id;
});

afterAll(async () => {
  await agent.stop();
});

const weird = fc.oneof(
  fc.string({ maxLength: 20 }),
  fc.constantFrom(
    "",
    "..",
    "%2e%2e",
    "%2F",
    "%00",
    "-1",
    "1e3",
    "NaN",
    "9".repeat(40),
    "a".repeat(300),
    "ünïcødé",
    "AAAAAAAA",
    "default",
  ),
);
const id = fc.oneof(fc.constant("UNIT"), weird);
/** The real routes with fuzzed parameters, plus some paths that match nothing. */
const target = fc.oneof(
  fc
    .tuple(id, weird, weird)
    .map(
      ([u, offset, follow]) =>
        `units/${u}/results?offset=${encodeURIComponent(offset)}&follow=${encodeURIComponent(follow)}`,
    ),
  fc
    .dictionary(fc.constantFrom("worktype", "node", "ttl", "id", "param.params", "param.x"), weird, { maxKeys: 4 })
    .map((q) => `units?${new URLSearchParams({ worktype: "cat", ...q }).toString()}`),
  fc
    .tuple(fc.constantFrom("", "/cancel", "/data", "/results", "/events", "/artifacts"), id)
    .map(([tail, u]) => `units/${encodeURIComponent(u)}${tail}`),
  fc.constantFrom("status", "units", "tokens", "connect", "connect?node=fuzzed", "nodes/"),
  fc.tuple(fc.constantFrom("tokens", "nodes"), weird).map(([kind, x]) => `${kind}/${encodeURIComponent(x)}`),
  fc.array(weird, { maxLength: 4 }).map((parts) => parts.map(encodeURIComponent).join("/")),
);
const body = fc.oneof(
  fc.constant(undefined),
  fc.string({ maxLength: 200 }),
  fc.json(),
  fc.uint8Array({ maxLength: 2000 }).map((b) => Buffer.from(b)),
  fc.record({ role: weird, name: fc.oneof(weird, fc.integer()) }).map((r) => JSON.stringify(r)),
);
const headers = fc.record(
  {
    "content-type": fc.constantFrom(
      "application/json",
      "text/plain",
      "application/octet-stream",
      "multipart/form-data; boundary=x",
      "garbage",
    ),
    "idempotency-key": fc.string({ minLength: 1, maxLength: 300 }).filter((s) => /^[\x21-\x7e]+$/.test(s)),
    "mesh-signature": fc.oneof(
      fc.string({ maxLength: 50 }).filter((s) => /^[\x21-\x7e]*$/.test(s)),
      fc.constant("a".repeat(10_000)),
    ),
  },
  { requiredKeys: [] },
);

describe("HTTP fuzzing", () => {
  it("every request gets a success or a typed 4xx, and the broker keeps serving", async () => {
    const { url, token } = broker();
    const seen = new Map<number, number>();
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom("GET", "GET", "GET", "POST", "POST", "POST", "DELETE", "DELETE", "PUT", "PATCH"),
        fc.constantFrom(`/v1/meshes/${mesh}/`, `/v1/meshes/${mesh}/`, `/v1/meshes/${mesh}/`, "/v1/meshes/", "/"),
        target,
        body,
        headers,
        async (method, base, rest, payload, extra) => {
          const target = `${url}${base}${rest.replace("UNIT", unitId)}`;
          const response = await request(target, {
            method,
            headers: { authorization: `Bearer ${token}`, ...extra },
            body: method === "GET" ? null : (payload ?? null),
            // A follow=1 results stream or a socket route could legitimately stay open: cap it.
            bodyTimeout: 2000,
            headersTimeout: 10_000,
          });
          seen.set(response.statusCode, (seen.get(response.statusCode) ?? 0) + 1);
          const text = await response.body.text().catch(() => "");
          expect(response.statusCode, `${method} ${target}`).toBeLessThan(500);
          if (response.statusCode >= 400) {
            const parsed = JSON.parse(text) as { error: { code: ErrorCode; message: string } };
            expect(ERROR_STATUS[parsed.error.code], `${method} ${target}: ${text}`).toBe(response.statusCode);
            expect(parsed.error.message).not.toMatch(/\n/);
          }
        },
      ),
      { numRuns: 400, seed: 7 },
    );
    // The run must have exercised both successes and refusals, or it proved little.
    const successes = [...seen].filter(([s]) => s < 300).reduce((n, [, count]) => n + count, 0);
    expect(successes).toBeGreaterThanOrEqual(10);
    expect(seen.has(400) && seen.has(404)).toBe(true);
    const still = await sh(mesh, "echo still-serving | $MESHCTL work submit cat -f -p -");
    expect(still.code).toBe(0);
    expect(still.stdout.toString()).toBe("still-serving\n");
  }, 120_000);
});
