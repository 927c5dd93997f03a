// @ts-check
/**
 * A server-sent events parser (the text/event-stream format of the HTML standard), for streams read
 * with fetch(): EventSource cannot send an Authorization header. Feed it decoded text in chunks of
 * any size; it returns the events that a blank line completed.
 */

/**
 * @typedef {object} SseEvent
 * @property {string} type  the `event:` field, "message" when absent
 * @property {string} data  the `data:` lines joined with newlines
 * @property {string} id    the last event id seen so far on the stream ("" if none)
 */

export class SseParser {
  /** The id to resume from (`Last-Event-ID`): the last `id:` field seen, dispatched or not. */
  lastEventId = "";
  /** A `retry:` field's reconnection delay in ms, if the server sent one. */
  retryMs = /** @type {number | null} */ (null);
  #buffer = "";
  #type = "";
  /** @type {string[]} */
  #data = [];

  /**
   * @param {string} chunk
   * @returns {SseEvent[]}
   */
  push(chunk) {
    this.#buffer += chunk;
    /** @type {SseEvent[]} */
    const events = [];
    for (;;) {
      const end = this.#buffer.search(/\r\n|\r|\n/);
      if (end < 0) break;
      // A CR at the very end may be the first half of a CRLF: wait for the next chunk.
      if (this.#buffer[end] === "\r" && end === this.#buffer.length - 1) break;
      const line = this.#buffer.slice(0, end);
      this.#buffer = this.#buffer.slice(end + (this.#buffer.startsWith("\r\n", end) ? 2 : 1));
      const event = this.#line(line);
      if (event) events.push(event);
    }
    return events;
  }

  /**
   * @param {string} line
   * @returns {SseEvent | null}
   */
  #line(line) {
    if (line === "") return this.#dispatch();
    if (line.startsWith(":")) return null;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") this.#type = value;
    else if (field === "data") this.#data.push(value);
    else if (field === "id" && !value.includes("\0")) this.lastEventId = value;
    else if (field === "retry" && /^\d+$/.test(value)) this.retryMs = Number.parseInt(value, 10);
    return null;
  }

  /** @returns {SseEvent | null} */
  #dispatch() {
    const type = this.#type || "message";
    const data = this.#data;
    this.#type = "";
    this.#data = [];
    if (data.length === 0) return null;
    return { type, data: data.join("\n"), id: this.lastEventId };
  }
}
