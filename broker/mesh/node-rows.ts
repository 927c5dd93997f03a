/**
 * The Mesh object's nodes table (its schema lives with the rest in store.ts): what each node said
 * in its hello and disk reports, when it was last seen, its outage, and the broker's holds on it
 * (paused, leaving, its last health check). Reached as `MeshStore.nodes`. The views dispatch and
 * status read (`connectedSlots`, `list`) count each node's active units from the units table too:
 * one database, one query.
 */
import { type DiskSpace, lowDiskReason } from "../../shared/disk.js";
import type { HealthReport } from "../../shared/health.js";
import type { HelloMessage } from "../../shared/protocol.js";
import type { NodeStatus } from "../../shared/unit.js";
import type { NodeSlots } from "./dispatch.js";
import { FLAG_COLUMNS, type FlagColumns, type KnownNode, nodeHold, storedFlags as flags } from "./fleet.js";
import type { LiveSet } from "./sockets.js";

type NodeInfo = Pick<HelloMessage, "workTypes" | "capacity" | "tags" | "versions" | "disk">;

/** A node as status starts from it, before lease-check.ts judges its silence. */
export type StoredNode = Omit<NodeStatus, "lost" | "unreachable" | "unreachableSince" | "left"> & {
  outageSince: number | null;
  leftAt: number | null;
};

export class NodeRows {
  constructor(private readonly sql: SqlStorage) {}

  /** A hello: stores what the node offers, and clears its outage and its leaving. */
  upsert(id: string, info: NodeInfo, now: number): void {
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
  setDisk(id: string, disk: DiskSpace): DiskSpace | null {
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

  touch(id: string, now: number): void {
    this.sql.exec("UPDATE nodes SET last_seen = ? WHERE id = ?", now, id);
  }

  has(id: string): boolean {
    return this.sql.exec("SELECT 1 FROM nodes WHERE id = ?", id).toArray().length > 0;
  }

  delete(id: string): void {
    this.sql.exec("DELETE FROM nodes WHERE id = ?", id);
  }

  count(): number {
    return this.sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM nodes").one().n;
  }

  /** Moves last_seen forward only: pings observed late must not make a node look older. */
  observe(id: string, seen: number): void {
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

  /** Every node the mesh knows (connected or not): what admission checks a unit's tags against. */
  known(): KnownNode[] {
    return this.sql
      .exec<{ id: string; info: string }>("SELECT id, info FROM nodes")
      .toArray()
      .map((row) => {
        const info = JSON.parse(row.info) as NodeInfo;
        return { id: row.id, workTypes: new Set(info.workTypes.map((w) => w.worktype)), tags: info.tags };
      });
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

  /** Paused by an admin: takes no new units until resumed. Returns false for an unknown node. */
  setPaused(id: string, paused: boolean): boolean {
    this.sql.exec("UPDATE nodes SET paused = ? WHERE id = ?", paused ? 1 : 0, id);
    return this.has(id);
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

  /**
   * Connection state is not stored: it is whether a live socket exists (`live`), because a broker
   * restart drops every socket without running any close handler.
   */
  list(live: LiveSet): StoredNode[] {
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
}
