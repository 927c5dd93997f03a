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

/**
 * Turns the results stored since the last call into events: `fresh` are the bytes just appended
 * at `offset`, used as they are instead of being read back out of storage. Runs in the same turn
 * as the write it follows, so the events commit with the bytes (and before the agent's ack).
 */
export function ingestEvents(store: UnitStore, fresh: { offset: number; data: Uint8Array }, now = Date.now()): number {
  return ingest(store, false, fresh, now);
}

/** The unit has ended: what is left unparsed becomes events, a last unfinished line too. */
export function finishEvents(store: UnitStore, now = Date.now()): number {
  return ingest(store, true, undefined, now);
}

/** `final`: no byte will follow, so a last unfinished line is an event too. */
function ingest(
  store: UnitStore,
  final: boolean,
  fresh: { offset: number; data: Uint8Array } | undefined,
  now: number,
): number {
  const doc = store.doc();
  if (!doc) return 0;
  let state = parseState(doc);
  // What earlier calls left unparsed holds no newline: if the new bytes hold none either, a long
  // line is still arriving, and reading it all again for each frame would cost O(line²).
  // (Plain output is cut every MAX_STDOUT_CHARS, so what it leaves pending is short to read again.)
  if (
    state.mode !== "lines" &&
    !final &&
    fresh &&
    state.offset < fresh.offset &&
    doc.stdoutSize - state.offset < MAX_LINE_BYTES &&
    !fresh.data.includes(0x0a)
  ) {
    return 0;
  }
  let added = 0;
  try {
    while (!state.ended) {
      const available = Math.max(0, doc.stdoutSize - state.offset);
      if (available === 0 && !final) break;
      const take = Math.min(available, MAX_LINE_BYTES);
      const step = parseEvents(state, read(store, state.offset, take, fresh), final && take === available);
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
    logError("unit:events-failed", error, { unit: doc.id, offset: state.offset });
    state = { ...state, ended: true };
  }
  if (JSON.stringify(state) !== JSON.stringify(doc.parse)) store.save({ ...doc, parse: state });
  return added;
}

/** `length` results bytes from `offset`: the unparsed tail of earlier frames from storage, the rest from `fresh`. */
function read(
  store: UnitStore,
  offset: number,
  length: number,
  fresh?: { offset: number; data: Uint8Array },
): Uint8Array {
  const end = offset + length;
  if (!fresh || end !== fresh.offset + fresh.data.byteLength || offset < fresh.offset - MAX_LINE_BYTES)
    return store.readRange("results", offset, length);
  if (offset >= fresh.offset) return fresh.data.subarray(offset - fresh.offset);
  const out = new Uint8Array(length);
  out.set(store.readRange("results", offset, fresh.offset - offset));
  out.set(fresh.data, fresh.offset - offset);
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
