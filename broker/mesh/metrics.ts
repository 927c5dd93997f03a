/**
 * A mesh's metrics (`GET /v1/meshes/:mesh/metrics`): counters and histograms kept in the Mesh
 * object's SQLite as they happen (so a restart loses nothing), gauges read at scrape time from the
 * queue index and the nodes. Everything is per mesh: Prometheus adds the instance and job labels.
 */
import type { UnitState } from "../../shared/states.js";
import type { NodeStatus } from "../../shared/unit.js";
import { type Family, type Labels, type Sample, bucketOf, histogramSamples, renderExposition } from "../metrics.js";

/** Submit → assignment, in seconds: from "a node was free" to "waited for the fleet to scale". */
export const PICKUP_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600] as const;
/** Start → end of the command, in seconds. */
export const RUN_BUCKETS = [0.5, 1, 5, 10, 30, 60, 300, 900, 1800, 3600, 10800, 43200] as const;

const SCHEMA =
  "CREATE TABLE IF NOT EXISTS metrics (name TEXT NOT NULL, labels TEXT NOT NULL, value REAL NOT NULL, PRIMARY KEY (name, labels))";

const key = (labels: Labels) => JSON.stringify(Object.entries(labels).sort(([a], [b]) => (a < b ? -1 : 1)));

export interface Snapshot {
  queue: { worktype: string; priority: number; count: number }[];
  nodes: NodeStatus[];
  units: { pending: number; running: number };
  meshEvents: number;
}

export class MeshMetrics {
  constructor(private readonly sql: SqlStorage) {
    sql.exec(SCHEMA);
  }

  private add(name: string, labels: Labels, by: number): void {
    this.sql.exec(
      "INSERT INTO metrics (name, labels, value) VALUES (?, ?, ?) ON CONFLICT (name, labels) DO UPDATE SET value = value + excluded.value",
      name,
      key(labels),
      by,
    );
  }

  private observe(name: string, bounds: readonly number[], labels: Labels, seconds: number): void {
    this.add(`${name}:${bucketOf(bounds, seconds)}`, labels, 1);
    this.add(`${name}:sum`, labels, seconds);
  }

  /** A unit was assigned `waitedMs` after its submit. */
  pickedUp(worktype: string, waitedMs: number): void {
    this.observe("pickup", PICKUP_BUCKETS, { worktype }, Math.max(0, waitedMs) / 1000);
  }

  /** A unit reached a final state; `ranMs` when it had started, its results' size. */
  finished(worktype: string, state: UnitState, ranMs: number | null, resultsBytes: number): void {
    this.add("finished", { worktype, state }, 1);
    if (ranMs !== null) this.observe("run", RUN_BUCKETS, { worktype }, Math.max(0, ranMs) / 1000);
    if (resultsBytes > 0) this.add("results_bytes", { worktype }, resultsBytes);
  }

  private rows(prefix: string): { name: string; labels: Labels; value: number }[] {
    return this.sql
      .exec<{ name: string; labels: string; value: number }>(
        "SELECT name, labels, value FROM metrics WHERE name = ? OR name LIKE ? ORDER BY labels, name",
        prefix,
        `${prefix}:%`,
      )
      .toArray()
      .map((row) => ({
        name: row.name,
        labels: Object.fromEntries(JSON.parse(row.labels) as [string, string][]),
        value: row.value,
      }));
  }

  private histogram(name: string, bounds: readonly number[]): Sample[] {
    const series = new Map<string, { labels: Labels; counts: number[]; sum: number }>();
    for (const row of this.rows(name)) {
      const k = key(row.labels);
      const entry = series.get(k) ?? { labels: row.labels, counts: Array(bounds.length + 1).fill(0), sum: 0 };
      const part = row.name.slice(name.length + 1);
      if (part === "sum") entry.sum = row.value;
      else entry.counts[Number(part)] = row.value;
      series.set(k, entry);
    }
    return [...series.values()].flatMap((s) => histogramSamples(bounds, s.counts, s.sum, s.labels));
  }

  render(now: Snapshot): string {
    return renderExposition(
      families(
        now,
        (name) => this.rows(name),
        (name, bounds) => this.histogram(name, bounds),
      ),
    );
  }
}

function nodeState(n: NodeStatus): "connected" | "unreachable" | "lost" | "left" | "gone" {
  if (n.connected) return "connected";
  if (n.left) return "left";
  if (n.lost) return "lost";
  return n.unreachable ? "unreachable" : "gone";
}

const NODE_STATES = ["connected", "unreachable", "lost", "left", "gone"] as const;

function families(
  now: Snapshot,
  rows: (name: string) => { labels: Labels; value: number }[],
  histogram: (name: string, bounds: readonly number[]) => Sample[],
): Family[] {
  const byState = new Map<string, number>(NODE_STATES.map((s) => [s, 0]));
  for (const n of now.nodes) byState.set(nodeState(n), (byState.get(nodeState(n)) ?? 0) + 1);
  const connected = now.nodes.filter((n) => n.connected);
  return [
    {
      name: "mesh_queue_depth",
      help: "Units ready and waiting for a node, by work type and priority.",
      type: "gauge",
      samples: now.queue.map((q) => ({
        labels: { worktype: q.worktype, priority: String(q.priority) },
        value: q.count,
      })),
    },
    {
      name: "mesh_units_pending",
      help: "Units in state Pending (queued, receiving their payload, or assigned and not yet started).",
      type: "gauge",
      samples: [{ value: now.units.pending }],
    },
    {
      name: "mesh_units_running",
      help: "Units in state Running.",
      type: "gauge",
      samples: [{ value: now.units.running }],
    },
    {
      name: "mesh_pickup_seconds",
      help: "Time from submit to assignment to a node.",
      type: "histogram",
      samples: histogram("pickup", PICKUP_BUCKETS),
    },
    {
      name: "mesh_run_seconds",
      help: "Time from start to end of units that started.",
      type: "histogram",
      samples: histogram("run", RUN_BUCKETS),
    },
    {
      name: "mesh_units_finished_total",
      help: "Units that reached a final state, by work type and state.",
      type: "counter",
      samples: rows("finished"),
    },
    {
      name: "mesh_results_bytes_total",
      help: "Results bytes of finished units, by work type.",
      type: "counter",
      samples: rows("results_bytes"),
    },
    {
      name: "mesh_events_total",
      help: "Events appended to the mesh's event feed (unit and node changes).",
      type: "counter",
      samples: [{ value: now.meshEvents }],
    },
    {
      name: "mesh_nodes",
      help: "Known nodes by state (connected, unreachable, lost, left, gone).",
      type: "gauge",
      samples: [...byState].map(([state, value]) => ({ labels: { state }, value })),
    },
    {
      name: "mesh_nodes_paused",
      help: "Nodes paused by an admin.",
      type: "gauge",
      samples: [{ value: now.nodes.filter((n) => n.paused).length }],
    },
    {
      name: "mesh_nodes_held",
      help: "Connected nodes that take no new units (paused, leaving, failed health check).",
      type: "gauge",
      samples: [{ value: connected.filter((n) => n.hold).length }],
    },
    {
      name: "mesh_capacity_slots",
      help: "Unit slots of connected nodes.",
      type: "gauge",
      samples: [{ value: connected.reduce((sum, n) => sum + n.capacity, 0) }],
    },
    {
      name: "mesh_capacity_in_use",
      help: "Units placed on connected nodes and not finished.",
      type: "gauge",
      samples: [{ value: connected.reduce((sum, n) => sum + n.activeUnits, 0) }],
    },
  ];
}
