/**
 * A follower's view of the results log: a pull-based stream that reads storage only when the
 * consumer asks for more, so a slow reader holds at most a chunk read back from storage and never
 * slows the agent or other readers. With `follow`, it waits for new bytes until the unit reaches a
 * final state.
 */
import { isTerminal } from "../../shared/states.js";
import type { UnitStore } from "./store.js";

/**
 * Bytes of the results held in memory that one pull passes on, at most: every pull waits its turn
 * on the object's one thread behind the agent's frames and their commits, so a pull takes what is
 * there rather than a chunk. They are views of the frames as they came (no copy, no memory of its
 * own); a chunk read back from SQLite (a copy) goes alone.
 */
export const PULL_BYTES = 4 * 1024 * 1024;

export function resultsStream(
  store: UnitStore,
  offset: number,
  follow: boolean,
  changed: (signal: AbortSignal) => Promise<void>,
): ReadableStream<Uint8Array> {
  let position = offset;
  const gone = new AbortController();
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        for (;;) {
          // At the stored end there is nothing to read: asking SQLite would copy the last chunk
          // out only to find the position past it (a follower that keeps up asks at every wake).
          const doc = store.doc();
          const chunk = doc && position < doc.stdoutSize ? store.readAt("results", position) : null;
          if (doc && chunk) {
            // No copy: the answer is copied as it leaves the object, and stored bytes never change.
            const from = position;
            controller.enqueue(chunk);
            position += chunk.byteLength;
            while (position - from < PULL_BYTES && position < doc.stdoutSize) {
              const held = store.heldResultsAt(position);
              if (!held) break;
              controller.enqueue(held);
              position += held.byteLength;
            }
            return;
          }
          if (!follow || !doc || isTerminal(doc.state) || gone.signal.aborted) {
            controller.close();
            return;
          }
          await changed(gone.signal);
        }
      },
      cancel() {
        gone.abort();
      },
    },
    { highWaterMark: 0 },
  );
}
