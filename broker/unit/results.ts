/**
 * A follower's view of the results log: a pull-based stream that reads storage only when the
 * consumer asks for more, so a slow reader holds no buffer and never slows the agent or other
 * readers. With `follow`, it waits for new bytes until the unit reaches a final state.
 */
import { isTerminal } from "../../shared/states.js";
import type { UnitStore } from "./store.js";

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
          if (chunk) {
            controller.enqueue(chunk.slice());
            position += chunk.byteLength;
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
