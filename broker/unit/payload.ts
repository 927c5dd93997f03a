/**
 * Stores a streamed request body as payload chunks. Memory stays at one chunk however large the
 * payload; a body that ends early (client gone) or grows past the limit is an error, and the unit
 * never runs on a truncated stdin as if it were whole.
 *
 * Two ways to say where the payload ends: a declared Content-Length, or framing (a body of pieces
 * with an end marker, shared/payload-framing.ts) when the length is not known up front. A framed
 * payload may be run while it arrives (a streaming work type), so its bytes are stored soon after
 * they come, not only in whole chunks, and `onProgress` is told the new size: at once when
 * STREAM_FLUSH_BYTES are waiting, else within STREAM_FLUSH_MS (a client trickling bytes one
 * packet at a time costs at most one stored row per STREAM_FLUSH_MS, not one per packet).
 */
import { type Result, fail, ok } from "../../shared/errors.js";
import { CHUNK_BYTES } from "../../shared/frames.js";
import { PieceDecoder } from "../../shared/payload-framing.js";

/** What ingestion needs of the Unit object's store (UnitStore): narrow, so it is tested alone. */
export interface PayloadSink {
  append(stream: "payload", offset: number, data: Uint8Array): void;
}

/** What ingestion reads: a Request fits, and so does the Unit object's RPC argument (upload.ts). */
export interface PayloadSource {
  readonly body: ReadableStream<Uint8Array> | null;
  readonly headers: Pick<Headers, "get">;
}

export const STREAM_FLUSH_BYTES = 64 * 1024;
export const STREAM_FLUSH_MS = 20;
/**
 * A framed upload that brings no byte for this long has stalled (a client hung, a half-open
 * connection): it fails, so a unit started on its first bytes stops holding its node's slot.
 * Generous: ansible-runner transmit writes as it zips, never minutes apart.
 */
export const UPLOAD_IDLE_MS = 5 * 60_000;

class Stalled extends Error {}

/** `read`, or a Stalled rejection once `ms` pass without it. */
async function within<T>(read: Promise<T>, ms: number): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const stalled = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Stalled()), ms);
  });
  try {
    return await Promise.race([read, stalled]);
  } finally {
    if (timer !== undefined) clearTimeout(timer);
  }
}

export interface IngestOptions {
  /** The body is framed (payload-framing.ts) instead of declaring its Content-Length. */
  framed?: boolean;
  /** Framed only: the payload's bytes stored so far, after each read that added some. */
  onProgress?: (size: number) => void;
  /** Checked after each read; a reason stops storing there (the unit ended meanwhile): the rest is read and dropped. */
  stop?: () => string | null;
  /** Framed only: UPLOAD_IDLE_MS by default. */
  idleMs?: number;
}

export async function ingestPayload(
  store: PayloadSink,
  request: PayloadSource,
  maxBytes: number,
  options: IngestOptions = {},
): Promise<Result<number>> {
  const declared = options.framed ? null : request.headers.get("content-length");
  if (declared !== null && Number(declared) > maxBytes) {
    return fail("payload_too_large", `payload of ${declared} bytes exceeds the ${maxBytes}-byte limit`);
  }
  const pieces = options.framed ? new PieceDecoder() : null;
  /** Why the upload stopped being stored (its unit ended meanwhile), and what was read after. */
  let stopped: string | null = null;
  let discarded = 0;
  let total = 0;
  const buffer = new Uint8Array(CHUNK_BYTES);
  let filled = 0;
  const flush = () => {
    if (filled === 0) return;
    // A copy of what is filled, not a new chunk-sized buffer: a streaming upload flushes often.
    store.append("payload", total - filled, buffer.slice(0, filled));
    filled = 0;
  };
  // Framed only: the bytes a streaming work type may already be waiting for.
  let timer: ReturnType<typeof setTimeout> | null = null;
  let failed = false;
  const publish = () => {
    if (timer !== null) clearTimeout(timer);
    timer = null;
    if (failed || filled === 0) return;
    flush();
    options.onProgress?.(total);
  };
  const take = (data: Uint8Array) => {
    let bytes = data;
    while (bytes.byteLength > 0) {
      const n = Math.min(bytes.byteLength, CHUNK_BYTES - filled);
      buffer.set(bytes.subarray(0, n), filled);
      filled += n;
      total += n;
      bytes = bytes.subarray(n);
      if (filled === CHUNK_BYTES) flush();
    }
  };
  if (request.body) {
    const reader = request.body.getReader();
    try {
      for (;;) {
        const { done, value } = pieces
          ? await within(reader.read(), options.idleMs ?? UPLOAD_IDLE_MS)
          : await reader.read();
        if (done) break;
        stopped ??= options.stop?.() ?? null;
        if (stopped !== null) {
          // Nothing more is stored, but the rest is read (up to the limit) so that the client,
          // still sending, gets the answer rather than a connection cut under its upload.
          discarded += value.byteLength;
          if (discarded > maxBytes) {
            await reader.cancel().catch(() => {});
            break;
          }
          continue;
        }
        const parts = pieces ? pieces.push(value) : ok([value]);
        if (!parts.ok) {
          await reader.cancel();
          return parts;
        }
        const size = parts.value.reduce((n, part) => n + part.byteLength, 0);
        if (total + size > maxBytes) {
          await reader.cancel();
          return fail("payload_too_large", `payload exceeds the ${maxBytes}-byte limit`);
        }
        const before = total - filled;
        for (const part of parts.value) take(part);
        // take() stored any whole chunk: tell whoever runs the unit already.
        if (pieces && total - filled > before) options.onProgress?.(total - filled);
        if (pieces && filled >= STREAM_FLUSH_BYTES) publish();
        else if (pieces && filled > 0) timer ??= setTimeout(publish, STREAM_FLUSH_MS);
      }
    } catch (error) {
      // The end marker came: the payload is whole, whatever happened to the HTTP body after it.
      if (pieces?.complete) {
        flush();
        return ok(total);
      }
      failed = true;
      if (error instanceof Stalled) {
        await reader.cancel().catch(() => {});
        return fail(
          "payload_incomplete",
          `the upload stalled: no payload bytes for ${Math.round((options.idleMs ?? UPLOAD_IDLE_MS) / 1000)} s after ${total} bytes`,
        );
      }
      return fail(
        "payload_incomplete",
        `payload stream broke after ${total} bytes (${error instanceof Error ? error.message : String(error)})`,
      );
    } finally {
      if (timer !== null) clearTimeout(timer);
    }
  }
  if (stopped !== null) return fail("illegal_transition", stopped);
  flush();
  if (pieces) {
    const end = pieces.finish(total);
    if (!end.ok) return end;
  }
  if (declared !== null && Number(declared) !== total) {
    return fail("payload_incomplete", `payload ended after ${total} of ${declared} declared bytes`);
  }
  return ok(total);
}
