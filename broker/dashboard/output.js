// @ts-check
/**
 * A unit's live output: stdout appended in sequence order with ANSI colours, scrolled to the end as
 * it grows unless the reader has scrolled up.
 */
import { createAnsiRenderer } from "./ansi.js";
import { el } from "./dom.js";

/** Within this many pixels of the bottom counts as "at the end". */
const STICKY_PX = 40;

export function outputPanel() {
  const ansi = createAnsiRenderer();
  const pre = el("pre", { class: "output", tabindex: "0", "aria-label": "unit output" });
  let lastSeq = 0;
  return {
    element: pre,
    /**
     * Appends one event's stdout; events at or below the last sequence number seen are skipped (a
     * resumed stream never repeats them, but a reload might).
     * @param {number} seq
     * @param {string} stdout
     */
    append(seq, stdout) {
      if (seq <= lastSeq) return;
      lastSeq = seq;
      if (stdout === "") return;
      const atEnd = pre.scrollHeight - pre.scrollTop - pre.clientHeight < STICKY_PX;
      pre.insertAdjacentHTML("beforeend", ansi.push(`${stdout}\n`));
      if (atEnd) pre.scrollTop = pre.scrollHeight;
    },
  };
}
