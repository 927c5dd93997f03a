import { concat } from "./fixtures/concat.js";
import { describe, expect, it } from "vitest";
import { END_PIECE, MAX_PIECE_BYTES, PieceDecoder, encodePiece } from "../../shared/payload-framing.js";

/** The framed body of `pieces`, with or without its end marker. */
const framed = (pieces: Uint8Array[], end = true) => concat([...pieces.map(encodePiece), ...(end ? [END_PIECE] : [])]);

/** Decodes `body` fed in slices of `step` bytes. */
function decode(body: Uint8Array, step: number) {
  const decoder = new PieceDecoder();
  const out: Uint8Array[] = [];
  for (let at = 0; at < body.byteLength; at += step) {
    const parts = decoder.push(body.subarray(at, at + step));
    if (!parts.ok) return { error: parts.error, data: concat(out) };
    out.push(...parts.value.map((p) => p.slice()));
  }
  return { data: concat(out), end: decoder.finish(concat(out).byteLength) };
}

const payload = [new Uint8Array([1, 2, 3]), new Uint8Array(1000).fill(7), new Uint8Array([9])];

describe("payload framing", () => {
  it.each([1, 2, 3, 4, 5, 7, 64, 5000])("decodes the pieces whole in slices of %i bytes", (step) => {
    const result = decode(framed(payload), step);
    expect(result.data).toEqual(concat(payload));
    expect(result.end?.ok).toBe(true);
  });

  it("an empty payload is the end marker alone", () => {
    expect(decode(END_PIECE, 1)).toEqual({ data: new Uint8Array(0), end: { ok: true, value: undefined } });
  });

  it("a body cut anywhere before its end marker is incomplete, never whole", () => {
    const body = framed(payload);
    for (let cut = 0; cut < body.byteLength; cut++) {
      const result = decode(body.subarray(0, cut), 3);
      expect(result.end?.ok, `cut at ${cut}`).toBe(false);
      expect(result.end).toMatchObject({ error: { code: "payload_incomplete" } });
    }
    // Without the marker at all, even at a piece boundary.
    expect(decode(framed(payload, false), 4).end?.ok).toBe(false);
  });

  it("refuses bytes after the end marker, and a piece longer than the limit", () => {
    const trailing = concat([framed(payload), new Uint8Array([0])]);
    expect(decode(trailing, 1000).error).toEqual({
      code: "bad_request",
      message: "the framed payload has bytes after its end marker",
    });
    const huge = new Uint8Array(4);
    new DataView(huge.buffer).setUint32(0, MAX_PIECE_BYTES + 1);
    expect(decode(huge, 4).error?.code).toBe("bad_request");
  });

  it("never encodes an empty piece (it would read as the end) or one over the limit", () => {
    expect(() => encodePiece(new Uint8Array(0))).toThrow(RangeError);
    expect(() => encodePiece(new Uint8Array(MAX_PIECE_BYTES + 1))).toThrow(RangeError);
  });
});
