/**
 * The Mesh object's SQLite tables: the schema and its migrations for all of them, the index of its
 * units (with the ready queue dispatch reads) and, through `nodes`, its nodes (node-rows.ts).
 */
import type { UnitState } from "../../shared/states.js";
import type { UnitSummary } from "../../shared/unit.js";
import { NodeRows } from "./node-rows.js";
import { CachedReadyQueue, type QueuedUnit, type ReadyQueue } from "./queue.js";

/** A stored index row: the public summary with epoch-ms times, plus whether the payload is in. */
export interface UnitIndexRow extends Omit<UnitSummary, "createdAt" | "updatedAt"> {
  /** The payload is whole. */
  ready: boolean;
  /** The payload is still streaming in, framed: placeable on nodes that take that (column ready = 2). */
  streaming?: boolean;
  /** The unit's own NODE_LOST_AFTER (submit's `lostAfter`); null: the broker's. */
  lostAfterMs: number | null;
  createdAt: number;
  updatedAt: number;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS nodes (
  id TEXT PRIMARY KEY, info TEXT NOT NULL, connected_at INTEGER, last_seen INTEGER);
CREATE TABLE IF NOT EXISTS units (
  id TEXT PRIMARY KEY, worktype TEXT NOT NULL, target_node TEXT, node TEXT,
  state TEXT NOT NULL, detail TEXT NOT NULL, ready INTEGER NOT NULL,
  idem_key TEXT UNIQUE, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS units_queue ON units(state, ready, node, created_at);
CREATE INDEX IF NOT EXISTS units_by_node ON units(node, state);
`;

/** Columns added after the tables above first shipped: added to stored tables that lack them. */
const ADDED_COLUMNS = [
  ["nodes", "unreachable_since", "INTEGER"],
  ["nodes", "lost_reported", "INTEGER NOT NULL DEFAULT 0"],
  ["units", "lost_after", "INTEGER"],
  ["units", "origin", "TEXT"],
  // Who submitted a unit (per-principal quotas), and what its idempotent request was.
  ["units", "submitter", "TEXT"],
  ["units", "idem_request", "TEXT"],
  // Issue 17: what a unit asks of its node (tags, JSON), its priority, when it started (run time).
  ["units", "tags", "TEXT"],
  ["units", "priority", "INTEGER NOT NULL DEFAULT 0"],
  ["units", "started_at", "INTEGER"],
  // Broker-side holds on a node: paused by an admin; leaving (one-shot agent) until its next hello.
  ["nodes", "paused", "INTEGER NOT NULL DEFAULT 0"],
  ["nodes", "left_at", "INTEGER"],
  // The last health check's report (JSON, shared/health.ts).
  ["nodes", "health", "TEXT"],
] as const;

const UNIT_COLUMNS =
  "id, worktype, target_node AS targetNode, node, state, detail, origin, ready, lost_after AS lostAfterMs, tags, priority, created_at AS createdAt, updated_at AS updatedAt";

function toUnit(row: Record<string, SqlStorageValue>): UnitIndexRow {
  return {
    ...(row as unknown as UnitIndexRow),
    ready: row.ready === READY.whole,
    streaming: row.ready === READY.streaming,
    tags: row.tags ? (JSON.parse(row.tags as string) as string[]) : [],
  };
}

/** The units table's `ready` column. */
const READY = { no: 0, whole: 1, streaming: 2 } as const;
const readyColumn = (change: { ready?: boolean; streaming?: boolean }) =>
  change.ready ? READY.whole : change.streaming ? READY.streaming : READY.no;

const isQueued = (row: UnitIndexRow) =>
  row.state === "Pending" && (row.ready || row.streaming === true) && row.node === null;
const queued = (row: UnitIndexRow): QueuedUnit => ({
  streaming: row.streaming === true,
  id: row.id,
  worktype: row.worktype,
  targetNode: row.targetNode,
  tags: row.tags,
  priority: row.priority,
  createdAt: row.createdAt,
});

export class MeshStore {
  /** The nodes table (node-rows.ts). */
  readonly nodes: NodeRows;
  /** The ready queue's index (queue.ts): every method below that changes a unit keeps it in step. */
  private readonly ready = new CachedReadyQueue(() =>
    this.sql
      .exec(
        `SELECT ${UNIT_COLUMNS} FROM units WHERE state = 'Pending' AND ready >= 1 AND node IS NULL ORDER BY created_at, id`,
      )
      .toArray()
      .map((row) => queued(toUnit(row))),
  );

  constructor(private readonly sql: SqlStorage) {
    sql.exec(SCHEMA);
    for (const [table, column, type] of ADDED_COLUMNS) {
      const has = sql
        .exec<{ name: string }>(`PRAGMA table_info(${table})`)
        .toArray()
        .some((c) => c.name === column);
      if (!has) sql.exec(`ALTER TABLE ${table} ADD COLUMN ${column} ${type}`);
    }
    sql.exec("CREATE INDEX IF NOT EXISTS units_by_origin ON units(origin, created_at)");
    sql.exec("CREATE INDEX IF NOT EXISTS units_by_submitter ON units(submitter, state)");
    this.nodes = new NodeRows(sql);
  }

  meta(key: string): string | null {
    const row = this.sql.exec<{ v: string }>("SELECT v FROM meta WHERE k = ?", key).toArray()[0];
    return row?.v ?? null;
  }

  setMeta(key: string, value: string): void {
    this.sql.exec("INSERT INTO meta (k, v) VALUES (?, ?) ON CONFLICT (k) DO UPDATE SET v = excluded.v", key, value);
  }

  /** Nodes holding Pending or Running units: the ones whose leases matter. */
  nodesWithActiveUnits(): string[] {
    return this.sql
      .exec<{ node: string }>(
        "SELECT DISTINCT node FROM units WHERE node IS NOT NULL AND state IN ('Pending', 'Running')",
      )
      .toArray()
      .map((row) => row.node);
  }

  /** `idempotency`: the key scoped to its submitter, and the request it was given for. */
  insertUnit(
    row: Omit<UnitIndexRow, "updatedAt">,
    idempotency: { key: string; request: string } | null,
    submitter: string,
  ): void {
    this.sql.exec(
      `INSERT INTO units (id, worktype, target_node, node, state, detail, origin, ready, lost_after, idem_key, created_at, updated_at, submitter, idem_request, tags, priority)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      row.id,
      row.worktype,
      row.targetNode,
      row.node,
      row.state,
      row.detail,
      row.origin,
      readyColumn(row),
      row.lostAfterMs,
      idempotency?.key ?? null,
      row.createdAt,
      row.createdAt,
      submitter,
      idempotency?.request ?? null,
      row.tags.length > 0 ? JSON.stringify(row.tags) : null,
      row.priority,
    );
    this.requeue(row.id);
  }

  unit(id: string): UnitIndexRow | null {
    const row = this.sql.exec(`SELECT ${UNIT_COLUMNS} FROM units WHERE id = ?`, id).toArray()[0];
    return row ? toUnit(row) : null;
  }

  unitByIdempotencyKey(key: string): (UnitIndexRow & { request: string | null }) | null {
    const row = this.sql
      .exec(`SELECT ${UNIT_COLUMNS}, idem_request AS request FROM units WHERE idem_key = ?`, key)
      .toArray()[0];
    return row ? { ...toUnit(row), request: (row.request as string | null) ?? null } : null;
  }

  pendingOf(submitter: string): number {
    return this.sql
      .exec<{ n: number }>("SELECT COUNT(*) AS n FROM units WHERE submitter = ? AND state = 'Pending'", submitter)
      .one().n;
  }

  /** Every unit, or those submitted with `origin`. */
  units(origin: string | null = null): UnitIndexRow[] {
    const rows =
      origin === null
        ? this.sql.exec(`SELECT ${UNIT_COLUMNS} FROM units ORDER BY created_at, id`)
        : this.sql.exec(`SELECT ${UNIT_COLUMNS} FROM units WHERE origin = ? ORDER BY created_at, id`, origin);
    return rows.toArray().map(toUnit);
  }

  /** `started_at` is set when the unit first reaches Running (the run-time histogram reads it). */
  updateUnit(
    id: string,
    change: { state: UnitState; detail: string; ready?: boolean; streaming?: boolean },
    now: number,
  ): void {
    this.sql.exec(
      `UPDATE units SET state = ?, detail = ?, ready = COALESCE(?, ready), updated_at = ?,
         started_at = CASE WHEN ? = 'Running' AND started_at IS NULL THEN ? ELSE started_at END WHERE id = ?`,
      change.state,
      change.detail,
      change.ready === undefined ? null : readyColumn(change),
      now,
      change.state,
      now,
      id,
    );
    this.requeue(id);
  }

  /** When the unit started running, if it did (epoch ms). */
  startedAt(id: string): number | null {
    return (
      this.sql.exec<{ t: number | null }>("SELECT started_at AS t FROM units WHERE id = ?", id).toArray()[0]?.t ?? null
    );
  }

  assignUnit(id: string, node: string, now: number): void {
    this.sql.exec(
      "UPDATE units SET node = ?, detail = ?, updated_at = ? WHERE id = ?",
      node,
      `assigned to ${node}`,
      now,
      id,
    );
    this.ready.sync(id, () => null);
  }

  deleteUnit(id: string): void {
    this.sql.exec("DELETE FROM units WHERE id = ?", id);
    this.ready.sync(id, () => null);
  }

  /** A retried submit whose first attempt failed before its payload was stored gets a new unit. */
  releaseIdempotencyKey(id: string): void {
    this.sql.exec("UPDATE units SET idem_key = NULL WHERE id = ?", id);
  }

  unassignUnit(id: string, detail: string, now: number): void {
    this.sql.exec("UPDATE units SET node = NULL, detail = ?, updated_at = ? WHERE id = ?", detail, now, id);
    this.requeue(id);
  }

  /** Ready, unassigned Pending units, indexed for dispatch (queue.ts). */
  readyQueue(): ReadyQueue {
    return this.ready.get();
  }

  /** Keeps the index in step with one unit's row. */
  private requeue(id: string): void {
    this.ready.sync(id, () => {
      const row = this.unit(id);
      return row && isQueued(row) ? queued(row) : null;
    });
  }

  /** Units placed on a node and not finished: what a reconnecting agent should hold. */
  activeOn(node: string): Pick<UnitIndexRow, "id" | "worktype" | "state" | "lostAfterMs">[] {
    return this.sql
      .exec<{ id: string; worktype: string; state: UnitState; lostAfterMs: number | null }>(
        "SELECT id, worktype, state, lost_after AS lostAfterMs FROM units WHERE node = ? AND state IN ('Pending', 'Running')",
        node,
      )
      .toArray();
  }

  /**
   * Counted in the index that leads with the state (units_queue): each submit asks, and a sum over
   * the whole table grew with every unit kept until released (most of them ended).
   */
  counts(): { pending: number; running: number } {
    const count = (state: UnitState) =>
      this.sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM units WHERE state = ?", state).one().n;
    return { pending: count("Pending"), running: count("Running") };
  }
}
