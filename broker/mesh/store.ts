/** The Mesh object's SQLite tables: its nodes and the index of its units. */
import { type DiskSpace, lowDiskReason } from "../../shared/disk.js";
import type { HelloMessage } from "../../shared/protocol.js";
import type { UnitState } from "../../shared/states.js";
import type { NodeStatus, UnitSummary } from "../../shared/unit.js";
import type { HealthReport } from "../../shared/health.js";
import type { NodeSlots } from "./dispatch.js";
import { FLAG_COLUMNS, type FlagColumns, type KnownNode, nodeHold, storedFlags as flags } from "./fleet.js";
import { CachedReadyQueue, type QueuedUnit, type ReadyQueue } from "./queue.js";
import type { LiveSet } from "./sockets.js";

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

type NodeInfo = Pick<HelloMessage, "workTypes" | "capacity" | "tags" | "versions" | "disk">;

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
  }

  meta(key: string): string | null {
    const row = this.sql.exec<{ v: string }>("SELECT v FROM meta WHERE k = ?", key).toArray()[0];
    return row?.v ?? null;
  }

  setMeta(key: string, value: string): void {
    this.sql.exec("INSERT INTO meta (k, v) VALUES (?, ?) ON CONFLICT (k) DO UPDATE SET v = excluded.v", key, value);
  }

  upsertNode(id: string, info: NodeInfo, now: number): void {
    this.sql.exec(
      `INSERT INTO nodes (id, info, connected_at, last_seen) VALUES (?, ?, ?, ?)
       ON CONFLICT (id) DO UPDATE SET info = excluded.info, connected_at = excluded.connected_at, last_seen = excluded.last_seen,
         unreachable_since = NULL, lost_reported = 0, left_at = NULL`,
      id,
      JSON.stringify(info),
      now,
      now,
    );
  }

  /** The node's latest disk report; whether it crossed its --min-free is the caller's to judge. */
  setNodeDisk(id: string, disk: DiskSpace): DiskSpace | null {
    const row = this.sql.exec<{ info: string }>("SELECT info FROM nodes WHERE id = ?", id).toArray()[0];
    if (!row) return null;
    const info = JSON.parse(row.info) as NodeInfo;
    this.sql.exec("UPDATE nodes SET info = ? WHERE id = ?", JSON.stringify({ ...info, disk }), id);
    return info.disk ?? null;
  }

  /** The node said its work type starts from an inline payload (WorkTypeAd.inlineStart). */
  startsInline(id: string, worktype: string): boolean {
    const row = this.sql.exec<{ info: string }>("SELECT info FROM nodes WHERE id = ?", id).toArray()[0];
    if (!row) return false;
    return (JSON.parse(row.info) as NodeInfo).workTypes.some((w) => w.worktype === worktype && w.inlineStart === true);
  }

  touchNode(id: string, now: number): void {
    this.sql.exec("UPDATE nodes SET last_seen = ? WHERE id = ?", now, id);
  }

  hasNode(id: string): boolean {
    return this.sql.exec("SELECT 1 FROM nodes WHERE id = ?", id).toArray().length > 0;
  }

  deleteNode(id: string): void {
    this.sql.exec("DELETE FROM nodes WHERE id = ?", id);
  }

  /** Moves last_seen forward only: pings observed late must not make a node look older. */
  observeNode(id: string, seen: number): void {
    this.sql.exec(
      "UPDATE nodes SET last_seen = ? WHERE id = ? AND (last_seen IS NULL OR last_seen < ?)",
      seen,
      id,
      seen,
    );
  }

  /** The node's current outage, if the lease check marked one (cleared by its next hello). */
  outage(id: string): { since: number; reportedLost: boolean } | null {
    const row = this.sql
      .exec<{ since: number | null; lost: number }>(
        "SELECT unreachable_since AS since, lost_reported AS lost FROM nodes WHERE id = ?",
        id,
      )
      .toArray()[0];
    return row?.since == null ? null : { since: row.since, reportedLost: row.lost === 1 };
  }

  markUnreachable(id: string, since: number): void {
    this.sql.exec("UPDATE nodes SET unreachable_since = ? WHERE id = ?", since, id);
  }

  markLostReported(id: string): void {
    this.sql.exec("UPDATE nodes SET lost_reported = 1 WHERE id = ?", id);
  }

  lastSeen(id: string): number | null {
    return (
      this.sql.exec<{ last_seen: number | null }>("SELECT last_seen FROM nodes WHERE id = ?", id).toArray()[0]
        ?.last_seen ?? null
    );
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

  /** Every node the mesh knows (connected or not): what admission checks a unit's tags against. */
  knownNodes(): KnownNode[] {
    return this.sql
      .exec<{ id: string; info: string }>("SELECT id, info FROM nodes")
      .toArray()
      .map((row) => {
        const info = JSON.parse(row.info) as NodeInfo;
        return { id: row.id, workTypes: new Set(info.workTypes.map((w) => w.worktype)), tags: info.tags };
      });
  }

  /** Paused by an admin: takes no new units until resumed. Returns false for an unknown node. */
  setPaused(id: string, paused: boolean): boolean {
    this.sql.exec("UPDATE nodes SET paused = ? WHERE id = ?", paused ? 1 : 0, id);
    return this.hasNode(id);
  }

  /** The agent said it is leaving: it takes nothing more, and its going is not a loss. */
  markLeaving(id: string, now: number): void {
    this.sql.exec("UPDATE nodes SET left_at = ? WHERE id = ?", now, id);
  }

  setHealth(id: string, report: string): void {
    this.sql.exec("UPDATE nodes SET health = ? WHERE id = ?", report, id);
  }

  health(id: string): HealthReport | null {
    const row = this.sql.exec<{ health: string | null }>("SELECT health FROM nodes WHERE id = ?", id).toArray()[0];
    return row?.health ? (JSON.parse(row.health) as HealthReport) : null;
  }

  /** Work types offered by any node this mesh has seen, connected or not. */
  knownWorkTypes(): Map<string, Set<string>> {
    const byNode = new Map<string, Set<string>>();
    for (const row of this.sql.exec<{ id: string; info: string }>("SELECT id, info FROM nodes")) {
      const info = JSON.parse(row.info) as NodeInfo;
      byNode.set(row.id, new Set(info.workTypes.map((w) => w.worktype)));
    }
    return byNode;
  }

  /**
   * Connection state is not stored: it is whether a live socket exists (`live`), because a broker
   * restart drops every socket without running any close handler.
   */
  nodes(live: LiveSet): (Omit<NodeStatus, "lost" | "unreachable" | "unreachableSince" | "left"> & {
    outageSince: number | null;
    leftAt: number | null;
  })[] {
    const active = this.activeCounts();
    return this.sql
      .exec<
        {
          id: string;
          info: string;
          connected_at: number | null;
          last_seen: number | null;
          unreachable_since: number | null;
        } & FlagColumns
      >(`SELECT id, info, connected_at, last_seen, unreachable_since, ${FLAG_COLUMNS} FROM nodes ORDER BY id`)
      .toArray()
      .map((row) => {
        const info = JSON.parse(row.info) as NodeInfo;
        return {
          nodeId: row.id,
          connected: live.has(row.id),
          workTypes: info.workTypes,
          capacity: info.capacity,
          activeUnits: active.get(row.id) ?? 0,
          tags: info.tags,
          versions: info.versions,
          connectedAt: row.connected_at === null ? null : new Date(row.connected_at).toISOString(),
          lastSeen: row.last_seen === null ? null : new Date(row.last_seen).toISOString(),
          outageSince: row.unreachable_since,
          disk: info.disk ?? null,
          lowDisk: lowDiskReason(info.disk),
          paused: row.paused === 1,
          leftAt: row.left_at,
          health: row.health ? (JSON.parse(row.health) as HealthReport) : null,
          hold: nodeHold(flags(row)),
        };
      });
  }

  /**
   * Connected nodes with a free slot, as dispatch sees them; `only`: that node alone (a hello). Full
   * nodes are left out in SQL, before their info is parsed or their sockets looked up.
   */
  connectedSlots(live: LiveSet, only: string | null = null): NodeSlots[] {
    return this.sql
      .exec<{ id: string; info: string; active: number } & FlagColumns>(
        // The flag columns are the nodes table's alone (the joined counts are node, n).
        `SELECT n.id, n.info, COALESCE(a.n, 0) AS active, ${FLAG_COLUMNS} FROM nodes n
         LEFT JOIN (SELECT node, COUNT(*) AS n FROM units WHERE node IS NOT NULL AND state IN ('Pending', 'Running') GROUP BY node) a
           ON a.node = n.id
         WHERE (? IS NULL OR n.id = ?) AND COALESCE(a.n, 0) < json_extract(n.info, '$.capacity')`,
        only,
        only,
      )
      .toArray()
      .filter((row) => live.has(row.id))
      .map((row) => {
        const info = JSON.parse(row.info) as NodeInfo;
        return {
          id: row.id,
          workTypes: info.workTypes.map((w) => w.worktype),
          streamingWorkTypes: info.workTypes.filter((w) => w.streamingPayload === true).map((w) => w.worktype),
          capacity: info.capacity,
          active: row.active,
          disk: info.disk ?? null,
          tags: info.tags,
          hold: nodeHold(flags(row)),
        };
      });
  }

  private activeCounts(): Map<string, number> {
    const counts = new Map<string, number>();
    for (const row of this.sql.exec<{ node: string; n: number }>(
      "SELECT node, COUNT(*) AS n FROM units WHERE node IS NOT NULL AND state IN ('Pending', 'Running') GROUP BY node",
    )) {
      counts.set(row.node, row.n);
    }
    return counts;
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

  nodeCount(): number {
    return this.sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM nodes").one().n;
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

  counts(): { pending: number; running: number } {
    const row = this.sql
      .exec<{ pending: number; running: number }>(
        "SELECT COALESCE(SUM(state = 'Pending'), 0) AS pending, COALESCE(SUM(state = 'Running'), 0) AS running FROM units",
      )
      .one();
    return row;
  }
}
