/**
 * The mesh-wide event log dashboards follow: unit state changes and node joins and leaves.
 * Kept in the Mesh object's SQLite, numbered, and trimmed to the newest `retention` events.
 */
import type { UnitState } from "../../shared/states.js";
import type { UnitIndexRow } from "./store.js";
import {
  type FeedEvent,
  type FeedQuery,
  Waiters,
  badResumePoint,
  feedResponse,
  renderEvent,
  resumePoint,
} from "../feed.js";

export type NodeChange =
  | "joined"
  | "left"
  | "unreachable"
  | "lost"
  | "removed"
  | "paused"
  | "resumed"
  | "leaving"
  | "healthy"
  | "unhealthy";

export type MeshEvent =
  | { kind: "unit"; id: string; worktype: string; node: string | null; state: UnitState | "Forgotten"; detail: string }
  | { kind: "node"; nodeId: string; change: NodeChange };

const SCHEMA = `
CREATE TABLE IF NOT EXISTS mesh_events (seq INTEGER PRIMARY KEY AUTOINCREMENT, at INTEGER NOT NULL, kind TEXT NOT NULL, body TEXT NOT NULL);
`;

/** Trimming runs once per this many appends rather than at each one. */
const TRIM_EVERY = 256;

export class MeshEventLog {
  private readonly waiters = new Waiters();

  constructor(
    private readonly sql: SqlStorage,
    private readonly retention: number,
  ) {
    sql.exec(SCHEMA);
  }

  append(event: MeshEvent, at = Date.now()): number {
    const { kind, ...body } = event;
    const seq = this.sql
      .exec<{ seq: number }>(
        "INSERT INTO mesh_events (at, kind, body) VALUES (?, ?, ?) RETURNING seq",
        at,
        kind,
        JSON.stringify(body),
      )
      .one().seq;
    if (seq % TRIM_EVERY === 0) this.sql.exec("DELETE FROM mesh_events WHERE seq <= ?", seq - this.retention);
    this.waiters.wake();
    return seq;
  }

  /** A unit's index row as it now stands; `detail`: what the row does not say (an assignment keeps it Pending). */
  unit(row: UnitIndexRow | null, detail?: string): void {
    if (row)
      this.append({
        kind: "unit",
        id: row.id,
        worktype: row.worktype,
        node: row.node,
        state: row.state,
        detail: detail ?? row.detail,
      });
  }

  node(nodeId: string, change: NodeChange): void {
    this.append({ kind: "node", nodeId, change });
  }

  /**
   * The feed (`GET …/events`), endless. `after=latest`: only what happens from now on (a dashboard
   * that just loaded its lists); a reconnect's Last-Event-ID still resumes where it left off.
   */
  response(query: FeedQuery, keepaliveMs: number): Response {
    const resumeFrom = query.lastEventId;
    const latest = query.after === "latest";
    const after = latest && resumeFrom === null ? this.lastSeq() : resumePoint(latest ? null : query.after, resumeFrom);
    if (after === null) return badResumePoint();
    const feed = {
      page: (from: number, limit: number) => this.page(from, limit),
      lastSeq: () => this.lastSeq(),
      firstSeq: () =>
        this.sql.exec<{ seq: number | null }>("SELECT min(seq) AS seq FROM mesh_events").one().seq ??
        this.lastSeq() + 1,
      end: () => null,
      changed: (signal: AbortSignal) => this.waiters.wait(signal),
    };
    return feedResponse(feed, query, after, keepaliveMs, {});
  }

  lastSeq(): number {
    return this.sql.exec<{ seq: number | null }>("SELECT max(seq) AS seq FROM mesh_events").one().seq ?? 0;
  }

  page(after: number, limit: number): FeedEvent[] {
    return this.sql
      .exec<{ seq: number; at: number; kind: string; body: string }>(
        "SELECT seq, at, kind, body FROM mesh_events WHERE seq > ? ORDER BY seq LIMIT ?",
        after,
        limit,
      )
      .toArray()
      .map((row) => ({ seq: row.seq, kind: row.kind, json: renderEvent(row.seq, row.kind, row.at, row.body) }));
  }
}
