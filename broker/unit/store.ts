/**
 * The Unit object's SQLite tables: its status document and its two byte streams (payload in,
 * results out), each stored as numbered chunks keyed by byte offset. Chunks never overlap and
 * never leave gaps, so a stream's size is the end of its last chunk.
 */
import { STATE_NUMBER } from "../../shared/states.js";
import type { UnitRecord } from "../../shared/unit.js";
import { type EventRow, INITIAL_PARSE, type ParseState, type ParsedEvent } from "./events.js";
import { redactParams } from "./redact.js";

export interface UnitDoc extends UnitRecord {
  payloadComplete: boolean;
  /**
   * The payload comes as a framed upload of unknown length (shared/payload-framing.ts). Until it is
   * complete the unit may be placed on a node whose work type takes a streaming payload, and its
   * payloadSize is what has arrived so far (payloadStreaming).
   */
  payloadFramed: boolean;
  cancelRequested: boolean;
  /** When the assigned node first attached: from then on the unit may be running there. */
  attachedAt: string | null;
  releasedAt: string | null;
  /** False while the Mesh object has not heard of the latest state; the alarm retries. */
  meshSynced: boolean;
  signature: string | null;
  /** How far the results were turned into events (events.ts); null in units stored before events. */
  parse: ParseState | null;
  /** The broker holds the node's report of how the command ended (on time, or late as lateExit). */
  exitReported: boolean;
  /** Results bytes stored when the unit reached its final state: what came later came late. */
  resultsAtVerdict: number | null;
}

export type { EventRow };

/** What the Mesh object gives a unit when it creates it. */
export interface InitUnit {
  mesh: string;
  id: string;
  worktype: string;
  targetNode: string | null;
  params: Record<string, string>;
  /** Time to live: fail "expired" unless started within this many ms of submission. */
  ttlMs: number | null;
  /** Its own NODE_LOST_AFTER (ms); null: the broker's. */
  lostAfterMs: number | null;
  signature: string | null;
  origin: string | null;
  /** Tags its node must have (shared/placement.ts), and its priority: shown in its record. */
  tags: string[];
  priority: number;
}

/** A new unit's status document: Pending, receiving its payload. */
export function newUnitDoc(input: InitUnit, now: number): UnitDoc {
  const { ttlMs, ...fields } = input;
  return {
    ...fields,
    node: null,
    state: "Pending",
    stateNumber: STATE_NUMBER.Pending,
    detail: "receiving payload",
    payloadSize: 0,
    stdoutSize: 0,
    exitCode: null,
    createdAt: new Date(now).toISOString(),
    startedAt: null,
    finishedAt: null,
    expiresAt: ttlMs === null ? null : new Date(now + ttlMs).toISOString(),
    signed: fields.signature !== null,
    nodeUnreachableSince: null,
    lateExit: null,
    outputCut: null,
    exitReported: false,
    resultsAtVerdict: null,
    payloadComplete: false,
    payloadFramed: false,
    cancelRequested: false,
    attachedAt: null,
    releasedAt: null,
    meshSynced: true,
    parse: INITIAL_PARSE,
  };
}

export const STREAM = { payload: 1, results: 2 } as const;
export type StreamName = keyof typeof STREAM;

const NEUTRAL: Partial<UnitDoc> = {
  payloadFramed: false,
  tags: [],
  priority: 0,
  outputCut: null,
  expiresAt: null,
  attachedAt: null,
  releasedAt: null,
  meshSynced: true,
  signature: null,
  signed: false,
  parse: null,
  origin: null,
  lostAfterMs: null,
  nodeUnreachableSince: null,
  lateExit: null,
  exitReported: false,
  resultsAtVerdict: null,
};

/** Results kept in memory for followers (UnitStore.recent): a few frames, not the agent's whole window. */
const RECENT_RESULTS_BYTES = 4 * 1024 * 1024;

const SCHEMA = `
CREATE TABLE IF NOT EXISTS unit (k INTEGER PRIMARY KEY CHECK (k = 1), doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS chunks (
  stream INTEGER NOT NULL, off INTEGER NOT NULL, data BLOB NOT NULL, PRIMARY KEY (stream, off));
CREATE TABLE IF NOT EXISTS events (
  seq INTEGER PRIMARY KEY, at INTEGER NOT NULL, kind TEXT NOT NULL,
  off INTEGER NOT NULL, len INTEGER NOT NULL, meta TEXT NOT NULL, secret INTEGER NOT NULL);
`;

export class UnitStore {
  private cached: UnitDoc | null | undefined;
  /**
   * The results chunks written last, kept in memory up to RECENT_RESULTS_BYTES (and always the
   * last one): a follower that keeps up, or nearly, reads them from here, and reading them from
   * SQLite would copy them out again. Each is a view of the frame it came in.
   */
  private recent: { off: number; data: Uint8Array }[] = [];
  private recentBytes = 0;

  /** Whether the tables exist: a new object makes them with its first write (`db`), not in its constructor. */
  private tables: boolean;

  constructor(private readonly sql: SqlStorage) {
    this.tables = sql.exec("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'unit'").toArray().length > 0;
  }

  /**
   * The database, its tables made if need be. Made in the constructor, they were a commit of their
   * own before the unit's first: on workerd each commit is an fsync on the one thread that runs
   * every object (docs/benchmarks.md), and a unit is made on the way to its first result byte.
   */
  private get db(): SqlStorage {
    if (!this.tables) {
      this.sql.exec(SCHEMA);
      this.tables = true;
    }
    return this.sql;
  }

  doc(): UnitDoc | null {
    // No tables, no unit: an object nobody has made a unit in (reading it must not write).
    if (!this.tables) return null;
    if (this.cached === undefined) {
      const row = this.sql.exec<{ doc: string }>("SELECT doc FROM unit WHERE k = 1").toArray()[0];
      // Fields added after a unit was written read as their neutral values.
      this.cached = row ? { ...NEUTRAL, ...(JSON.parse(row.doc) as UnitDoc) } : null;
    }
    return this.cached;
  }

  save(doc: UnitDoc): void {
    this.db.exec(
      "INSERT INTO unit (k, doc) VALUES (1, ?) ON CONFLICT (k) DO UPDATE SET doc = excluded.doc",
      JSON.stringify(doc),
    );
    this.cached = doc;
  }

  /** The results chunk written last, if this instance wrote it (no copy: do not change it). */
  latestResults(): { offset: number; data: Uint8Array } | null {
    const last = this.recent.at(-1);
    return last ? { offset: last.off, data: last.data } : null;
  }

  append(stream: StreamName, offset: number, data: Uint8Array): void {
    this.db.exec("INSERT INTO chunks (stream, off, data) VALUES (?, ?, ?)", STREAM[stream], offset, data);
    if (stream === "results") this.remember(offset, data);
  }

  /** The results from `offset` to the end of the chunk holding it if that chunk is in memory, else null (no copy). */
  heldResultsAt(offset: number): Uint8Array | null {
    const held = this.recentAt(offset);
    return held ? held.data.subarray(offset - held.off) : null;
  }

  /** The bytes of `stream` from `offset` to the end of the chunk holding it, or null past the end. */
  readAt(stream: StreamName, offset: number): Uint8Array | null {
    const held = stream === "results" ? this.heldResultsAt(offset) : null;
    if (held) return held;
    const row = this.db
      .exec<{ off: number; data: ArrayBuffer }>(
        "SELECT off, data FROM chunks WHERE stream = ? AND off <= ? ORDER BY off DESC LIMIT 1",
        STREAM[stream],
        offset,
      )
      .toArray()[0];
    if (!row) return null;
    const data = new Uint8Array(row.data);
    const start = offset - row.off;
    return start < data.byteLength ? data.subarray(start) : null;
  }

  private remember(off: number, data: Uint8Array): void {
    this.recent.push({ off, data });
    this.recentBytes += data.byteLength;
    while (this.recent.length > 1 && this.recentBytes > RECENT_RESULTS_BYTES)
      this.recentBytes -= this.recent.shift()!.data.byteLength;
  }

  private recentAt(offset: number): { off: number; data: Uint8Array } | null {
    for (let i = this.recent.length - 1; i >= 0; i--) {
      const chunk = this.recent[i]!;
      if (offset >= chunk.off) return offset < chunk.off + chunk.data.byteLength ? chunk : null;
    }
    return null;
  }

  private forgetRecent(): void {
    this.recent = [];
    this.recentBytes = 0;
  }

  /** `length` bytes of `stream` from `offset` (fewer if the stream ends first). */
  readRange(stream: StreamName, offset: number, length: number): Uint8Array {
    return this.rangeReader(stream)(offset, length);
  }

  /**
   * A reader of many nearby ranges (a page of events): it keeps the last chunk it fetched, since
   * each fetch copies a whole chunk out of SQLite and a chunk holds hundreds of event lines.
   */
  rangeReader(stream: StreamName): (offset: number, length: number) => Uint8Array {
    let held: { off: number; data: Uint8Array } | null = null;
    const chunkAt = (position: number): Uint8Array | null => {
      if (!held || position < held.off || position >= held.off + held.data.byteLength)
        held = stream === "results" ? this.recentAt(position) : null;
      if (!held) {
        const row = this.db
          .exec<{ off: number; data: ArrayBuffer }>(
            "SELECT off, data FROM chunks WHERE stream = ? AND off <= ? ORDER BY off DESC LIMIT 1",
            STREAM[stream],
            position,
          )
          .toArray()[0];
        if (!row || position - row.off >= row.data.byteLength) return null;
        held = { off: row.off, data: new Uint8Array(row.data) };
      }
      return held.data.subarray(position - held.off);
    };
    return (offset, length) => {
      const out = new Uint8Array(length);
      let filled = 0;
      while (filled < length) {
        const chunk = chunkAt(offset + filled);
        if (!chunk) break;
        const piece = chunk.subarray(0, length - filled);
        out.set(piece, filled);
        filled += piece.byteLength;
      }
      return filled === length ? out : out.subarray(0, filled);
    };
  }

  addEvents(events: readonly ParsedEvent[], at: number): void {
    for (const e of events) {
      this.db.exec(
        "INSERT INTO events (at, kind, off, len, meta, secret) VALUES (?, ?, ?, ?, ?, ?)",
        at,
        e.kind,
        e.offset,
        e.length,
        JSON.stringify(e.meta),
        e.secret ? 1 : 0,
      );
    }
  }

  lastEventSeq(): number {
    return this.db.exec<{ seq: number | null }>("SELECT max(seq) AS seq FROM events").one().seq ?? 0;
  }

  eventsAfter(after: number, limit: number): EventRow[] {
    return this.db
      .exec<EventRow & Record<string, SqlStorageValue>>(
        "SELECT * FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
        after,
        limit,
      )
      .toArray();
  }

  deleteStreams(): void {
    this.forgetRecent();
    this.db.exec("DELETE FROM chunks");
    this.db.exec("DELETE FROM events");
  }

  deleteStream(stream: StreamName): void {
    if (stream === "results") this.forgetRecent();
    this.db.exec("DELETE FROM chunks WHERE stream = ?", STREAM[stream]);
  }

  /** Forgets the unit entirely (the tombstone's retention is over). */
  forget(): void {
    this.deleteStreams();
    this.db.exec("DELETE FROM unit");
    this.cached = null;
  }
}

/**
 * The status record the API shows: the document without the object's own bookkeeping, and with
 * `secret_*` params masked for every role (receptor's convention: such params reach the node only).
 */
export function publicRecord(doc: UnitDoc): UnitRecord {
  const {
    payloadComplete: _p,
    payloadFramed: _f,
    cancelRequested: _c,
    attachedAt: _a,
    releasedAt: _r,
    meshSynced: _m,
    signature: _s,
    parse: _e,
    exitReported: _x,
    resultsAtVerdict: _v,
    ...record
  } = doc;
  return { ...record, params: redactParams(record.params) };
}

/** The payload is still arriving and the unit may already run on it (UnitDoc.payloadFramed). */
export function payloadStreaming(doc: Pick<UnitDoc, "payloadFramed" | "payloadComplete">): boolean {
  return doc.payloadFramed && !doc.payloadComplete;
}
