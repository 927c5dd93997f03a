/**
 * A payload uploaded while it is still being produced (`meshctl work submit -p -` reading a pipe):
 * its length is not known when the upload starts, so it cannot declare a Content-Length, and a
 * chunked body cut short can reach the broker looking complete (wrangler dev forwards it so). So
 * such a body is framed: pieces of `[u32 big-endian length][bytes]`, ended by a piece of length 0.
 * A body that stops anywhere before that end marker is incomplete, whatever the HTTP layers did
 * with it, and a unit never runs on it as if it were whole.
 *
 * The request says it is framed with `Mesh-Payload-Framing: pieces` (PAYLOAD_FRAMING_HEADER).
 */
import { type Result, fail, ok } from "./errors.js";

export const PAYLOAD_FRAMING_HEADER = "mesh-payload-framing";
export const PAYLOAD_FRAMING = "pieces";
/** Largest piece a sender may frame; the decoder holds at most one piece's header at a time, never a piece. */
export const MAX_PIECE_BYTES = 16 * 1024 * 1024;
const HEADER = 4;

/** One framed piece of `data` (an empty `data` would end the stream: send `END_PIECE` for that). */
export function encodePiece(data: Uint8Array): Uint8Array {
  if (data.byteLength === 0 || data.byteLength > MAX_PIECE_BYTES)
    throw new RangeError(`a payload piece holds 1 to ${MAX_PIECE_BYTES} bytes, not ${data.byteLength}`);
  const piece = new Uint8Array(HEADER + data.byteLength);
  new DataView(piece.buffer).setUint32(0, data.byteLength);
  piece.set(data, HEADER);
  return piece;
}

/** The end marker: the payload is whole. */
export const END_PIECE = new Uint8Array(HEADER);

/**
 * Decodes a framed body as it arrives, in any split: `push` returns the payload bytes the chunk
 * completes (views into it, not copies) and `finish` says whether the end marker came. Bytes after
 * the end marker, or a piece longer than MAX_PIECE_BYTES, are errors.
 */
export class PieceDecoder {
  private header = new Uint8Array(HEADER);
  private headerFilled = 0;
  /** Bytes of the current piece still to come; 0 while reading a header. */
  private remaining = 0;
  private ended = false;

  get complete(): boolean {
    return this.ended;
  }

  push(chunk: Uint8Array): Result<Uint8Array[]> {
    const out: Uint8Array[] = [];
    let at = 0;
    while (at < chunk.byteLength) {
      if (this.ended) return fail("bad_request", "the framed payload has bytes after its end marker");
      if (this.remaining > 0) {
        const n = Math.min(this.remaining, chunk.byteLength - at);
        out.push(chunk.subarray(at, at + n));
        this.remaining -= n;
        at += n;
        continue;
      }
      const n = Math.min(HEADER - this.headerFilled, chunk.byteLength - at);
      this.header.set(chunk.subarray(at, at + n), this.headerFilled);
      this.headerFilled += n;
      at += n;
      if (this.headerFilled < HEADER) break;
      this.headerFilled = 0;
      const length = new DataView(this.header.buffer).getUint32(0);
      if (length > MAX_PIECE_BYTES)
        return fail("bad_request", `a payload piece is at most ${MAX_PIECE_BYTES} bytes, not ${length}`);
      if (length === 0) this.ended = true;
      else this.remaining = length;
    }
    return ok(out);
  }

  /** The body ended: fine only if the end marker came, at a piece boundary. */
  finish(received: number): Result<void> {
    if (this.ended) return ok(undefined);
    return fail("payload_incomplete", `payload ended after ${received} bytes without its end marker (cut short)`);
  }
}
