// @ts-check
/**
 * Follows one of the broker's event streams with fetch() (so the request carries the token) and
 * reconnects after drops with backoff, resuming after the last event seen (`Last-Event-ID`). Stops on
 * an `end` event, on abort, or on an answer that retrying cannot fix (401, 403, 404, 410).
 */
import { noteUnauthorized, readError } from "./api.js";
import { SseParser } from "./sse.js";

/** @typedef {import("./sse.js").SseEvent} SseEvent */

const FATAL = new Set([400, 401, 403, 404, 410]);

/**
 * The delay before reconnect attempt `attempt` (0-based): doubling from 500 ms to 10 s, with jitter.
 * @param {number} attempt
 * @param {number} [random]
 */
export function backoffMs(attempt, random = Math.random()) {
  const ceiling = Math.min(10_000, 500 * 2 ** attempt);
  return Math.round(ceiling / 2 + (ceiling / 2) * random);
}

/**
 * @param {object} opts
 * @param {string} opts.url
 * @param {string} opts.token
 * @param {AbortSignal} opts.signal
 * @param {(event: SseEvent) => void} opts.onEvent
 * @param {(state: "open" | "retrying" | "ended" | "failed", detail?: string) => void} [opts.onState]
 * @returns {Promise<void>} settles when the stream ends, fails or is aborted
 */
export async function followStream({ url, token, signal, onEvent, onState = () => {} }) {
  const parser = new SseParser();
  let attempt = 0;
  while (!signal.aborted) {
    try {
      /** @type {Record<string, string>} */
      const headers = { accept: "text/event-stream", authorization: `Bearer ${token}` };
      if (parser.lastEventId !== "") headers["last-event-id"] = parser.lastEventId;
      const response = await fetch(url, { headers, signal });
      if (!response.ok || !response.body) {
        const detail = (await readError(response)).message;
        if (FATAL.has(response.status)) {
          onState("failed", detail);
          noteUnauthorized(response.status);
          return;
        }
        throw new Error(detail);
      }
      onState("open");
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        attempt = 0;
        for (const event of parser.push(value)) {
          onEvent(event);
          if (event.type === "end") {
            await reader.cancel();
            onState("ended");
            return;
          }
        }
      }
      onState("retrying", "stream closed");
    } catch (error) {
      if (signal.aborted) return;
      onState("retrying", error instanceof Error ? error.message : String(error));
    }
    await sleep(Math.max(parser.retryMs ?? 0, backoffMs(attempt++)), signal);
  }
}

/**
 * @param {number} ms
 * @param {AbortSignal} signal
 */
function sleep(ms, signal) {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve(undefined);
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done);
  });
}
