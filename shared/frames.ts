/**
 * Binary frames carry stream bytes: [version u8][kind u8][offset u64 big-endian][data].
 * The unit is implied by the socket (one data socket per unit), so the header names only which
 * stream and where in it; the length is the frame's own. Offsets make resends idempotent: the
 * receiver drops what it already holds and refuses gaps.
 */
import { type Result, fail, ok } from "./errors.js";

export const FRAME_VERSION = 1;
export const FRAME_HEADER = 10;
/**
 * Data bytes per frame: just under the 1 MiB WebSocket message limit of Workers (and well under the
 * 2 MB SQLite row limit), because each results frame costs the broker one commit and one ack.
 */
export const CHUNK_BYTES = 1024 * 1024 - 1024;
export const MAX_FRAME_BYTES = FRAME_HEADER + CHUNK_BYTES;

export const StreamKind = { payload: 1, results: 2 } as const;
export type StreamKind = keyof typeof StreamKind;

export interface DataFrame {
  kind: StreamKind;
  offset: number;
  data: Uint8Array;
}

export function encodeFrame(kind: StreamKind, offset: number, data: Uint8Array): Uint8Array {
  const frame = new Uint8Array(FRAME_HEADER + data.byteLength);
  frame.set(data, FRAME_HEADER);
  return writeFrameHeader(frame, kind, offset);
}

/** Writes the header into the first FRAME_HEADER bytes of `frame`, whose data follow: no copy of them. */
export function writeFrameHeader(frame: Uint8Array, kind: StreamKind, offset: number): Uint8Array {
  const view = new DataView(frame.buffer, frame.byteOffset, FRAME_HEADER);
  view.setUint8(0, FRAME_VERSION);
  view.setUint8(1, StreamKind[kind]);
  view.setBigUint64(2, BigInt(offset));
  return frame;
}

export function decodeFrame(bytes: ArrayBuffer | Uint8Array): Result<DataFrame> {
  const frame = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  if (frame.byteLength < FRAME_HEADER)
    return fail("bad_frame", `binary frame shorter than its ${FRAME_HEADER}-byte header`);
  if (frame.byteLength > MAX_FRAME_BYTES) return fail("frame_too_large", `binary frame over ${MAX_FRAME_BYTES} bytes`);
  const view = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
  const version = view.getUint8(0);
  if (version !== FRAME_VERSION) return fail("bad_frame", `binary frame version ${version}, expected ${FRAME_VERSION}`);
  const kindByte = view.getUint8(1);
  const kind = kindByte === 1 ? "payload" : kindByte === 2 ? "results" : null;
  if (!kind) return fail("bad_frame", `unknown binary frame kind ${kindByte}`);
  const offset = view.getBigUint64(2);
  if (offset > BigInt(Number.MAX_SAFE_INTEGER)) return fail("bad_frame", "binary frame offset out of range");
  return ok({ kind, offset: Number(offset), data: frame.subarray(FRAME_HEADER) });
}
