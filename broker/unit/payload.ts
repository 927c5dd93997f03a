/**
 * Stores a streamed request body as fixed-size payload chunks. Memory stays at one chunk however
 * large the payload; a body that ends early (client gone) or grows past the limit is an error,
 * and the unit never runs on a truncated stdin.
 */
import { type Result, fail, ok } from "../../shared/errors.js";
import { CHUNK_BYTES } from "../../shared/frames.js";

/** What ingestion needs of the Unit object's store (UnitStore): narrow, so it is tested alone. */
export interface PayloadSink {
  append(stream: "payload", offset: number, data: Uint8Array): void;
}

/** What ingestion reads: a Request fits, and so does the Unit object's RPC argument (upload.ts). */
export interface PayloadSource {
  readonly body: ReadableStream<Uint8Array> | null;
  readonly headers: Pick<Headers, "get">;
}

export async function ingestPayload(
  store: PayloadSink,
  request: PayloadSource,
  maxBytes: number,
): Promise<Result<number>> {
  const declared = request.headers.get("content-length");
  if (declared !== null && Number(declared) > maxBytes) {
    return fail("payload_too_large", `payload of ${declared} bytes exceeds the ${maxBytes}-byte limit`);
  }
  let total = 0;
  let buffer = new Uint8Array(CHUNK_BYTES);
  let filled = 0;
  const flush = () => {
    if (filled === 0) return;
    store.append("payload", total - filled, buffer.subarray(0, filled));
    buffer = new Uint8Array(CHUNK_BYTES);
    filled = 0;
  };
  if (request.body) {
    const reader = request.body.getReader();
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        let bytes: Uint8Array = value;
        if (total + bytes.byteLength > maxBytes) {
          await reader.cancel();
          return fail("payload_too_large", `payload exceeds the ${maxBytes}-byte limit`);
        }
        while (bytes.byteLength > 0) {
          const n = Math.min(bytes.byteLength, CHUNK_BYTES - filled);
          buffer.set(bytes.subarray(0, n), filled);
          filled += n;
          total += n;
          bytes = bytes.subarray(n);
          if (filled === CHUNK_BYTES) flush();
        }
      }
    } catch (error) {
      return fail(
        "payload_incomplete",
        `payload stream broke after ${total} bytes (${error instanceof Error ? error.message : String(error)})`,
      );
    }
  }
  flush();
  if (declared !== null && Number(declared) !== total) {
    return fail("payload_incomplete", `payload ended after ${total} of ${declared} declared bytes`);
  }
  return ok(total);
}
