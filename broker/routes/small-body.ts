/**
 * A small submit's body, read whole by the Worker so that it can come with the create call (the
 * Unit object stores it as it is made, and the Mesh dispatches the unit in the same call): two
 * calls between objects and two commits fewer before the 201, which is most of a small unit's
 * start (docs/benchmarks.md). Small: what an assignment may carry inline (INLINE_PAYLOAD_BYTES),
 * which passes the Mesh object anyway.
 *
 * A small body that breaks off or is not its declared length fails the submit (payload_incomplete)
 * before any unit is made, so nothing runs on a truncated stdin and nothing is left to clean up; a
 * retry with the same Idempotency-Key makes the unit. (A larger body streams into the unit as it
 * is made, and a break fails that unit: docs/lifecycle.md.)
 */
import { MeshError } from "../../shared/errors.js";
import { INLINE_PAYLOAD_BYTES } from "../../shared/protocol.js";

export const isSmall = (length: number, maxPayloadBytes: number) =>
  length <= Math.min(INLINE_PAYLOAD_BYTES, maxPayloadBytes);

/** The whole body, exactly `length` bytes, or a payload_incomplete error. */
export async function readSmallBody(body: ReadableStream<Uint8Array> | null, length: number): Promise<Uint8Array> {
  const whole = new Uint8Array(length);
  let total = 0;
  if (body) {
    const reader = body.getReader();
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        if (total + value.byteLength > length) {
          await reader.cancel().catch(() => {});
          throw new MeshError("payload_incomplete", `payload is longer than its declared ${length} bytes`);
        }
        whole.set(value, total);
        total += value.byteLength;
      }
    } catch (error) {
      if (error instanceof MeshError) throw error;
      const why = error instanceof Error ? error.message : String(error);
      throw new MeshError("payload_incomplete", `payload stream broke after ${total} bytes (${why})`);
    }
  }
  if (total !== length)
    throw new MeshError("payload_incomplete", `payload ended after ${total} of ${length} declared bytes`);
  return whole;
}

/** The body again, for a retry whose unit still waits for its payload (UnitObject.receivePayload). */
export function bodyOf(bytes: Uint8Array): ReadableStream<Uint8Array> {
  return new ReadableStream<Uint8Array>({
    start(controller) {
      if (bytes.byteLength > 0) controller.enqueue(bytes);
      controller.close();
    },
  });
}
