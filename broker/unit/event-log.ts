/**
 * The Unit object's event log: ingestion as results arrive, and the feed followers read
 * (rendered from the stored summary plus, for JSON lines, the line itself from the results).
 */
import { isTerminal } from "../../shared/states.js";
import { logError } from "../log.js";
import {
  type Feed,
  type FeedEvent,
  type FeedQuery,
  type PageCache,
  type Waiters,
  badResumePoint,
  feedResponse,
  fillPage,
  renderEvent,
  resumePoint,
} from "../feed.js";
import { INITIAL_PARSE, MAX_LINE_BYTES, type ParseState, lineText, parseEvents } from "./events.js";
import { redactEnv } from "./redact.js";
import type { EventRow, UnitDoc, UnitStore } from "./store.js";

const decoder = new TextDecoder();

/** Where parsing stands; a unit stored before events existed starts at its current end. */
function parseState(doc: UnitDoc): ParseState {
  return (
    doc.parse ?? (doc.stdoutSize === 0 ? INITIAL_PARSE : { ...INITIAL_PARSE, offset: doc.stdoutSize, mode: "lines" })
  );
}

/** Results bytes just written at `offset`, still in memory. */
export interface FreshResults {
  offset: number;
  data: Uint8Array;
}

/**
 * Turns the results stored since the last call into events: `fresh` are the chunks just appended
 * (in order, contiguous, ending at the stored end), used as they are instead of being read back
 * out of storage. Runs in the same turn as the write it follows, so the events commit with the
 * bytes (and before the agent's ack). The document is saved once, whatever the chunks.
 */
export function ingestEvents(
  store: UnitStore,
  fresh: readonly FreshResults[],
  { before = null, now = Date.now() }: { before?: FreshResults | null; now?: number } = {},
): number {
  const doc = store.doc();
  if (!doc) return 0;
  let state = parseState(doc);
  let added = 0;
  // `before`: the chunk stored just before these, if still in memory, which holds the line
  // an earlier call left unfinished; reading it back from SQLite would copy the whole row out.
  const held = before && before.offset + before.data.byteLength === fresh[0]?.offset ? [before] : [];
  // Chunk by chunk, each up to its own end: the bytes a step parses are then the tail of the
  // chunk before and this chunk, never a read of the whole batch.
  for (const chunk of fresh) {
    held.push(chunk);
    const step = ingest(store, doc.id, state, chunk.offset + chunk.data.byteLength, false, held, now);
    state = step.state;
    added += step.added;
  }
  saveParse(store, state);
  return added;
}

/** The unit has ended: what is left unparsed becomes events, a last unfinished line too. */
export function finishEvents(store: UnitStore, now = Date.now()): number {
  const doc = store.doc();
  if (!doc) return 0;
  const step = ingest(store, doc.id, parseState(doc), doc.stdoutSize, true, [], now);
  saveParse(store, step.state);
  return step.added;
}

function saveParse(store: UnitStore, state: ParseState): void {
  const doc = store.doc();
  if (doc && JSON.stringify(state) !== JSON.stringify(doc.parse)) store.save({ ...doc, parse: state });
}

/** Parses the results from `state` up to `end`. `final`: no byte will follow, so a last unfinished line is an event too. */
function ingest(
  store: UnitStore,
  unit: string,
  start: ParseState,
  end: number,
  final: boolean,
  fresh: readonly FreshResults[],
  now: number,
): { state: ParseState; added: number } {
  let state = start;
  const last = fresh.at(-1);
  // What earlier calls left unparsed holds no newline: if the new bytes hold none either, a long
  // line is still arriving, and reading it all again for each frame would cost O(line²).
  // (Plain output is cut every MAX_STDOUT_CHARS, so what it leaves pending is short to read again.)
  if (
    state.mode !== "lines" &&
    !final &&
    last &&
    state.offset < last.offset &&
    end - state.offset < MAX_LINE_BYTES &&
    !last.data.includes(0x0a)
  ) {
    return { state, added: 0 };
  }
  let added = 0;
  try {
    while (!state.ended) {
      const available = Math.max(0, end - state.offset);
      if (available === 0 && !final) break;
      const take = Math.min(available, MAX_LINE_BYTES);
      // Plain output needs only the newlines of the new chunk: what lies before it holds none.
      const plain =
        state.mode === "lines" &&
        last &&
        last.offset > state.offset &&
        state.offset + take === last.offset + last.data.byteLength;
      const step = plain
        ? parseEvents(state, last.data, final && take === available, last.offset)
        : parseEvents(state, read(store, state.offset, take, fresh), final && take === available);
      store.addEvents(step.events, now);
      added += step.events.length;
      const moved =
        step.state.offset !== state.offset || step.state.ended !== state.ended || step.state.mode !== state.mode;
      state = step.state;
      if (!moved) break;
    }
  } catch (error) {
    // Events are a view of the results: a failure here must never hold up an ack or a state
    // change. The unit keeps the events it has; its results stay whole.
    logError("unit:events-failed", error, { unit, offset: state.offset });
    state = { ...state, ended: true };
  }
  return { state, added };
}

/**
 * `length` results bytes from `offset`: from the `fresh` chunks where they hold them (a view when
 * one chunk does), the part before them from storage.
 */
function read(store: UnitStore, offset: number, length: number, fresh: readonly FreshResults[]): Uint8Array {
  const end = offset + length;
  const first = fresh.findLastIndex((c) => c.offset <= offset);
  const held = first === -1 ? null : fresh[first]!;
  if (held && end <= held.offset + held.data.byteLength)
    return held.data.subarray(offset - held.offset, end - held.offset);
  const out = new Uint8Array(length);
  let filled = 0;
  const from = first === -1 ? 0 : first;
  const stored = Math.min(length, (fresh[from]?.offset ?? end) - offset);
  if (stored > 0) {
    out.set(store.readRange("results", offset, stored));
    filled = stored;
  }
  for (const chunk of fresh.slice(from)) {
    if (filled >= length) break;
    const piece = chunk.data.subarray(
      offset + filled - chunk.offset,
      Math.min(chunk.data.byteLength, end - chunk.offset),
    );
    out.set(piece, filled);
    filled += piece.byteLength;
  }
  return out;
}

/** `GET …/units/:id/events`: SSE or a JSON page, from `after` / Last-Event-ID. */
export function eventsResponse(
  store: UnitStore,
  pages: PageCache,
  waiters: Waiters,
  query: FeedQuery,
  { redact, keepaliveMs }: { redact: boolean; keepaliveMs: number },
): Response {
  const after = resumePoint(query.after, query.lastEventId);
  if (after === null) return badResumePoint();
  const end = () => {
    const doc = store.doc();
    if (!doc || !isTerminal(doc.state) || !(eventsComplete(doc) || doc.state === "Released")) return null;
    return JSON.stringify({ state: doc.state, detail: doc.detail, exitCode: doc.exitCode });
  };
  const feed = unitFeed(store, pages, (signal) => waiters.wait(signal), redact, end);
  return feedResponse(feed, query, after, keepaliveMs, { state: store.doc()?.state ?? null });
}

/** True once the log is complete: the unit is final and every byte was parsed. */
export function eventsComplete(doc: UnitDoc): boolean {
  // A unit stored before events existed (parse null) has all the events it will ever have.
  return doc.parse === null || doc.parse.ended;
}

/**
 * The unit's events as a Feed. `redact`: the reader may not see secrets, so the environment in
 * ansible-runner's `starting` line is masked.
 */
export function unitFeed(
  store: UnitStore,
  cache: PageCache,
  changed: (signal: AbortSignal) => Promise<void>,
  redact: boolean,
  final: () => string | null,
): Feed {
  return {
    page: (after, limit) =>
      cache.get(`${redact ? "r" : "f"}:${after}:${limit}:${store.lastEventSeq()}`, () => {
        const read = store.rangeReader("results");
        return fillPage(store.eventsAfter(after, limit), (row) => render(read, row, redact));
      }),
    lastSeq: () => store.lastEventSeq(),
    end: final,
    changed,
  };
}

/** What a reader without `submit` sees of a line that may hold the worker's environment. */
export const MASKED_LINE = "(masked: this line may hold the worker's environment; a token that may submit sees it)";

function render(read: (offset: number, length: number) => Uint8Array, row: EventRow, redact: boolean): FeedEvent {
  let tail = "";
  if (row.kind === "line" && row.secret && redact) {
    tail = `,"stdout":${JSON.stringify(MASKED_LINE)}`;
  } else if (row.kind === "line") {
    const text = lineText(read(row.off, row.len));
    tail = `,"stdout":${JSON.stringify(text.stdout)}${text.stdout_truncated ? ',"stdout_truncated":true' : ""}`;
  } else {
    let data = decoder.decode(read(row.off, row.len));
    // SSE data must be one line; JSON may hold a CR as whitespace. Rewriting it is rare and safe.
    if (row.secret && redact) data = JSON.stringify(redactEnv(JSON.parse(data) as Record<string, unknown>));
    else if (/[\r\n]/.test(data)) data = JSON.stringify(JSON.parse(data));
    tail = `,"data":${data}`;
  }
  return { seq: row.seq, kind: row.kind, json: renderEvent(row.seq, row.kind, row.at, row.meta, tail) };
}
