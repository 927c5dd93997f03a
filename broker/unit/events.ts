/**
 * Turns a unit's results stream into numbered events as it arrives, without copying the stream:
 * an event points at its line's bytes in the results log and keeps only a small summary.
 *
 * Two formats, told apart by the first line. ansible-runner's worker stream (JSON lines: status
 * lines, runner events, a base64 zip of the artifacts, eof; see ../shared/reference) gives one
 * event per line and skips the zip. Any other output gives "line" events: the whole lines that
 * arrived together, so a command printing megabytes of short lines makes a few events per frame
 * rather than one row per line.
 */

export type EventKind = "status" | "event" | "line";

export interface ParseState {
  /** Results offset up to which lines are parsed; the bytes after it are a line still arriving. */
  offset: number;
  mode: "unknown" | "runner" | "lines";
  /** The runner stream said eof (or the unit ended): nothing after it is parsed. */
  ended: boolean;
  /** Where the worker's artifacts zip lies in the results stream, as base64 text. */
  zip: { offset: number; length: number } | null;
}

/** A "line" event's text: its bytes without the final newline, cut to MAX_STDOUT_CHARS. */
export function lineText(bytes: Uint8Array): Pick<EventMeta, "stdout" | "stdout_truncated"> {
  return stdoutOf(decoder.decode(bytes[bytes.byteLength - 1] === NEWLINE ? bytes.subarray(0, -1) : bytes));
}

export interface ParsedEvent {
  kind: EventKind;
  /** The line's bytes in the results stream (without its newline); served as `data` for JSON lines. */
  offset: number;
  length: number;
  /** The summary fields served with the event (JSON-safe, small; a line's text is read when served). */
  meta: EventMeta;
  /** ansible-runner's `starting` line carries the worker's whole environment. */
  secret: boolean;
}

export interface EventMeta {
  stdout?: string;
  status?: string;
  event?: string;
  counter?: number;
  uuid?: string;
  parent_uuid?: string;
  host?: string;
  play?: string;
  task?: string;
  changed?: boolean;
  failed?: boolean;
  stdout_truncated?: true;
}

/** A stored event (store.ts): its summary, and where its line lies in the results. */
export interface EventRow {
  seq: number;
  /** When the broker stored it (ms). */
  at: number;
  kind: string;
  off: number;
  len: number;
  /** The summary (EventMeta) as JSON. */
  meta: string;
  secret: number;
}

export const INITIAL_PARSE: ParseState = { offset: 0, mode: "unknown", ended: false, zip: null };

/** Other lines a runner stream may start with before its first JSON line (stderr warnings). */
export const PREAMBLE_BYTES = 64 * 1024;
/** A runner line longer than this is cut into pieces and not parsed as JSON (plain output is cut at MAX_STDOUT_CHARS). */
export const MAX_LINE_BYTES = 8 * 1024 * 1024;
/** The stdout kept in an event's summary; the whole line stays in the results (`data`, artifacts). */
export const MAX_STDOUT_CHARS = 64 * 1024;

const NEWLINE = 0x0a;
const FAILED_EVENTS = new Set([
  "runner_on_failed",
  "runner_on_unreachable",
  "runner_item_on_failed",
  "runner_on_async_failed",
]);
const decoder = new TextDecoder();

/**
 * Parses `bytes` (the results from `state.offset` on). Complete lines become events; an unfinished
 * last line is left for the next call unless `final` (the unit ended), or unless it is already
 * longer than MAX_LINE_BYTES.
 *
 * In "lines" mode `bytes` may start later, at `from`: what lies between `state.offset` and `from`
 * is the rest of a line an earlier call held back, which holds no newline, so only its length
 * matters (the caller need not read it back from storage).
 */
export function parseEvents(
  state: ParseState,
  bytes: Uint8Array,
  final: boolean,
  from = state.offset,
): { state: ParseState; events: ParsedEvent[] } {
  if (from !== state.offset && (state.mode !== "lines" || from < state.offset))
    throw new Error(`parse from ${from} while at ${state.offset} in ${state.mode} mode`);
  const base = from;
  const next = { ...state };
  const events: ParsedEvent[] = [];
  // Negative while in the held-back bytes before `bytes`.
  let position = state.offset - from;
  while (!next.ended && position < bytes.byteLength) {
    if (next.mode === "unknown") {
      // Up to PREAMBLE_BYTES of other lines (a warning on stderr, say) may come before a runner
      // stream's first line: each becomes a line event; a runner line decides for runner mode.
      const newline = bytes.indexOf(NEWLINE, position);
      const wait = bytes[position] === 0x7b ? MAX_LINE_BYTES : PREAMBLE_BYTES;
      if (newline === -1 && !final && bytes.byteLength - position < wait) break;
      const line = bytes.subarray(position, newline === -1 ? Math.min(bytes.byteLength, position + wait) : newline);
      if (looksLikeRunner(line)) next.mode = "runner";
      else if (newline === -1 || base + position >= PREAMBLE_BYTES) next.mode = "lines";
      else {
        events.push({
          kind: "line",
          offset: base + position,
          length: newline + 1 - position,
          meta: {},
          secret: holdsEnv(line),
        });
        position = newline + 1;
        continue;
      }
    }
    if (next.mode === "lines") {
      // One scan for the last newline, and one pass: whatever can be cut is cut here.
      const lastLine = bytes.lastIndexOf(NEWLINE) + 1;
      const whole = lastLine > Math.max(position, 0);
      let end = final ? bytes.byteLength : lastLine;
      if (!final && !whole) {
        // A line longer than an event would be cut into pieces anyway: cut it as it comes.
        end = position + Math.floor((bytes.byteLength - position) / MAX_STDOUT_CHARS) * MAX_STDOUT_CHARS;
      }
      lineEvents(events, bytes, base, position, end, whole);
      position = Math.max(position, end);
      break;
    }
    const newline = bytes.indexOf(NEWLINE, position);
    let end = newline === -1 ? bytes.byteLength : newline;
    if (newline === -1 && !final && end - position < MAX_LINE_BYTES) break;
    if (end - position > MAX_LINE_BYTES) end = position + MAX_LINE_BYTES;
    const parsed = runnerLine(bytes.subarray(position, end), base + position);
    position = end < bytes.byteLength && bytes[end] === NEWLINE ? end + 1 : end;
    if (parsed === "eof") next.ended = true;
    else if (parsed && "zip" in parsed) {
      next.zip = parsed.zip;
      // The base64 has no newline after it: parsing resumes where it ends, maybe in a later frame.
      position = parsed.zip.offset + parsed.zip.length - base;
    } else if (parsed) events.push(parsed);
  }
  if (final) next.ended = true;
  return { state: { ...next, offset: base + position }, events };
}

/** Whether a line that is not a runner status line may still carry the worker's environment. */
function holdsEnv(line: Uint8Array): boolean {
  return decoder.decode(line).includes('"env"');
}

function looksLikeRunner(line: Uint8Array): boolean {
  if (line[0] !== 0x7b) return false;
  const value = parseObject(line);
  return (
    value !== null && ("status" in value || "uuid" in value || "event" in value || "zipfile" in value || "eof" in value)
  );
}

function parseObject(line: Uint8Array): Record<string, unknown> | null {
  try {
    const value: unknown = JSON.parse(decoder.decode(line));
    return value !== null && typeof value === "object" && !Array.isArray(value)
      ? (value as Record<string, unknown>)
      : null;
  } catch {
    return null;
  }
}

function runnerLine(
  line: Uint8Array,
  offset: number,
): ParsedEvent | { zip: ParseState["zip"] & object } | "eof" | null {
  if (line.byteLength === 0 || (line.byteLength === 1 && line[0] === 0x0d)) return null;
  const value = line[0] === 0x7b ? parseObject(line) : null;
  // Not JSON: ansible-runner's process would fail the stream here; show the line rather than drop
  // it (masked for readers if it looks like a status line cut by interleaved stderr).
  if (!value) return { kind: "line", offset, length: line.byteLength, meta: {}, secret: holdsEnv(line) };
  if (value.eof === true) return "eof";
  if (typeof value.zipfile === "number" && Number.isSafeInteger(value.zipfile) && value.zipfile >= 0) {
    return { zip: { offset: offset + line.byteLength + 1, length: 4 * Math.ceil(value.zipfile / 3) } };
  }
  if (typeof value.status === "string") {
    return {
      kind: "status",
      offset,
      length: line.byteLength,
      meta: { status: value.status },
      secret: value.status === "starting" || "env" in value,
    };
  }
  if (value.event === "keepalive") return null;
  return { kind: "event", offset, length: line.byteLength, meta: eventMeta(value), secret: false };
}

function eventMeta(value: Record<string, unknown>): EventMeta {
  const data = (typeof value.event_data === "object" && value.event_data !== null ? value.event_data : {}) as Record<
    string,
    unknown
  >;
  const res = (typeof data.res === "object" && data.res !== null ? data.res : {}) as Record<string, unknown>;
  const meta: EventMeta = {};
  if (typeof value.event === "string") meta.event = short(value.event);
  if (typeof value.counter === "number") meta.counter = value.counter;
  if (typeof value.uuid === "string") meta.uuid = short(value.uuid);
  if (typeof value.parent_uuid === "string") meta.parent_uuid = short(value.parent_uuid);
  const host = data.host ?? data.remote_addr;
  if (typeof host === "string") meta.host = short(host);
  if (typeof data.play === "string") meta.play = short(data.play);
  if (typeof data.task === "string") meta.task = short(data.task);
  if (res.changed === true || data.changed === true) meta.changed = true;
  if (typeof value.event === "string" && FAILED_EVENTS.has(value.event) && data.ignore_errors !== true)
    meta.failed = true;
  if (typeof value.stdout === "string" && value.stdout !== "") Object.assign(meta, stdoutOf(value.stdout));
  return meta;
}

/** Summary strings are labels: a task name of megabytes stays whole only in the line itself. */
function short(text: string): string {
  return text.length > 1024 ? `${text.slice(0, 1024)}…` : text;
}

export function stdoutOf(text: string): Pick<EventMeta, "stdout" | "stdout_truncated"> {
  return text.length > MAX_STDOUT_CHARS
    ? { stdout: text.slice(0, MAX_STDOUT_CHARS), stdout_truncated: true }
    : { stdout: text };
}

/**
 * Whole lines in events of at most MAX_STDOUT_CHARS bytes, for the results from `base + start` to
 * `base + end` (`bytes` holds them from `base`; before it, from a negative `start`, no newline).
 * Their text is not kept in the summary: it is read from the results when served, so output is
 * never stored twice.
 */
function lineEvents(
  events: ParsedEvent[],
  bytes: Uint8Array,
  base: number,
  start0: number,
  end0: number,
  newlines: boolean,
): void {
  let start = start0;
  while (start < end0) {
    // Cut at the last newline within the size limit; a single longer line is cut where it must be.
    let end = Math.min(end0, start + MAX_STDOUT_CHARS);
    if (newlines && end < end0) {
      const from = Math.max(start, 0);
      const newline = end > from ? bytes.subarray(from, end).lastIndexOf(NEWLINE) : -1;
      if (newline !== -1 && from + newline > start) end = from + newline + 1;
    }
    events.push({ kind: "line", offset: base + start, length: end - start, meta: {}, secret: false });
    start = end;
  }
}
