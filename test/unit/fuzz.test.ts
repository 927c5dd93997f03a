/**
 * Property-based fuzzing of every decoder a peer's bytes reach: whatever arrives, the answer is a
 * value or a typed error with a known code and a one-line message, never an exception.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { ERROR_STATUS } from "../../shared/errors.js";
import { decodeFrame } from "../../shared/frames.js";
import { decodeAgentControl, decodeAgentData, decodeBrokerControl, decodeBrokerData } from "../../shared/protocol.js";
import { parseDuration } from "../../shared/duration.js";

const DECODERS = { decodeAgentControl, decodeAgentData, decodeBrokerControl, decodeBrokerData };

function typedOrValue(result: { ok: boolean; error?: { code: string; message: string } }) {
  if (result.ok) return;
  expect(Object.keys(ERROR_STATUS)).toContain(result.error!.code);
  expect(result.error!.message).not.toMatch(/\n/);
}

/** Text shaped like our messages, to get past JSON.parse and into the schemas. */
const messageLike = fc
  .record(
    {
      type: fc.constantFrom(
        "hello",
        "reject",
        "attach",
        "payload-pull",
        "started",
        "finished",
        "welcome",
        "assign",
        "attached",
        "results-ack",
        "cancel",
        "closed",
        "error",
        "nope",
      ),
      protocol: fc.oneof(fc.integer(), fc.string()),
      nodeId: fc.oneof(fc.string(), fc.constant("../etc"), fc.constant("a".repeat(100))),
      unit: fc.string(),
      unitId: fc.string(),
      offset: fc.oneof(fc.integer(), fc.double(), fc.constant(-1), fc.constant(2 ** 64)),
      length: fc.oneof(fc.integer(), fc.constant(1 << 30)),
      error: fc.anything(),
      workTypes: fc.anything(),
    },
    { requiredKeys: ["type"] },
  )
  .map((m) => JSON.stringify(m));

describe("decoders never throw", () => {
  for (const [name, decode] of Object.entries(DECODERS)) {
    it(`${name}: arbitrary text, arbitrary JSON, and message-shaped JSON`, () => {
      fc.assert(
        fc.property(
          fc.oneof(fc.string(), fc.json(), messageLike, fc.string({ unit: "binary", maxLength: 200 })),
          (text) => {
            typedOrValue(decode(text));
          },
        ),
        { numRuns: 2000, seed: 42 },
      );
    });
  }

  it("decodeFrame: arbitrary bytes", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
        typedOrValue(decodeFrame(bytes));
      }),
      { numRuns: 5000, seed: 42 },
    );
  });

  it("parseDuration: arbitrary text", () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 40 }), (text) => {
        const result = parseDuration(text);
        typedOrValue(result);
        if (result.ok) expect(result.value).toBeGreaterThan(0);
      }),
      { numRuns: 3000, seed: 42 },
    );
  });
});
