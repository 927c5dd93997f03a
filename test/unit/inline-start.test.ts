import { describe, expect, it } from "vitest";
import { inlinePayload } from "../../agent/runner.js";
import { planInlineStart } from "../../broker/unit/logic.js";
import {
  type Assignment,
  INLINE_PAYLOAD_BYTES,
  MAX_TEXT_FRAME,
  decodeBrokerControl,
  encode,
  fitsInline,
  toBase64,
} from "../../shared/protocol.js";

const unit = (payloadSize: number): Assignment => ({
  id: "u1",
  mesh: "m",
  worktype: "w",
  params: {},
  payloadSize,
  signature: null,
  targetNode: null,
});

describe("planInlineStart", () => {
  const doc = { payloadComplete: true, payloadSize: 10, cancelRequested: false };
  it("inlines a whole, small payload for a node that asks", () => {
    expect(planInlineStart(doc, true)).toBe(true);
    expect(planInlineStart({ ...doc, payloadSize: INLINE_PAYLOAD_BYTES }, true)).toBe(true);
    expect(planInlineStart({ ...doc, payloadSize: 0 }, true)).toBe(true);
  });
  it("never for a node that does not ask, a payload too large or incomplete, or a unit with a cancel on the way", () => {
    expect(planInlineStart(doc, false)).toBe(false);
    expect(planInlineStart({ ...doc, payloadSize: INLINE_PAYLOAD_BYTES + 1 }, true)).toBe(false);
    expect(planInlineStart({ ...doc, payloadComplete: false }, true)).toBe(false);
    expect(planInlineStart({ ...doc, cancelRequested: true }, true)).toBe(false);
  });
});

describe("inlinePayload (agent)", () => {
  it("takes a payload of exactly payloadSize bytes for its own unit", () => {
    const bytes = new Uint8Array(70_000).map((_, i) => i % 251);
    const got = inlinePayload("u1", { unit: unit(bytes.byteLength), payload: toBase64(bytes) });
    expect(got?.payload.equals(Buffer.from(bytes))).toBe(true);
    expect(inlinePayload("u1", { unit: unit(0), payload: "" })?.payload.byteLength).toBe(0);
  });
  it("ignores a payload that is not whole, or another unit's: the unit then downloads as usual", () => {
    const payload = toBase64(new TextEncoder().encode("abcdef"));
    expect(inlinePayload("u1", { unit: unit(7), payload })).toBeNull();
    expect(inlinePayload("u1", { unit: unit(5), payload })).toBeNull();
    expect(inlinePayload("u2", { unit: unit(6), payload })).toBeNull();
  });
});

describe("fitsInline", () => {
  it("a payload of INLINE_PAYLOAD_BYTES with ordinary params fits one text frame, and the agent decodes it", () => {
    const start = {
      unit: { ...unit(INLINE_PAYLOAD_BYTES), id: "AbCd1234", params: { params: "-v" } },
      payload: toBase64(new Uint8Array(INLINE_PAYLOAD_BYTES)),
    };
    expect(fitsInline(start)).toBe(true);
    const text = encode({ type: "assign", unitId: "AbCd1234", worktype: "w", start });
    expect(text.length).toBeLessThanOrEqual(MAX_TEXT_FRAME);
    expect(decodeBrokerControl(text).ok).toBe(true);
  });
  it("params or a signature that would push the assign past a text frame leave the payload out", () => {
    const start = {
      unit: { ...unit(INLINE_PAYLOAD_BYTES), params: { params: "x".repeat(30_000) } },
      payload: toBase64(new Uint8Array(INLINE_PAYLOAD_BYTES)),
    };
    expect(fitsInline(start)).toBe(false);
  });
});
