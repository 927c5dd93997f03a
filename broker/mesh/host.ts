/**
 * What the Mesh object's parts (control.ts, placement.ts, lease-check.ts, removal.ts) use of it:
 * its storage, event log, settings and the objects it talks to. Passed in, like the Unit
 * object's UnitHost, so each part says what it needs.
 */
import type { BrokerConfig } from "../../shared/broker-config.js";
import type { AccessStub, UnitStub } from "../stubs.js";
import type { MeshEventLog } from "./events.js";
import type { MeshMetrics } from "./metrics.js";
import type { Probes } from "./probes.js";
import type { LeaseTimes } from "./lease.js";
import { pingedAt } from "./sockets.js";
import type { MeshStore } from "./store.js";

export interface MeshHost {
  readonly ctx: DurableObjectState;
  readonly store: MeshStore;
  readonly events: MeshEventLog;
  readonly config: BrokerConfig;
  /** Counters and histograms for GET …/metrics (metrics.ts). */
  readonly metrics: MeshMetrics;
  /** Health checks waiting for their node's answer (probes.ts). */
  readonly probes: Probes;
  /**
   * When this instance started (a restart, a deploy, a wake from eviction). Kept in memory only,
   * on purpose: node silence is counted from no earlier than this, because before it nobody was
   * here to hear the node (see lease.ts).
   */
  readonly startedAt: number;
  /** Nodes whose join is being issued a credential: they count against MAX_NODES already. */
  readonly joining: Set<string>;
  /** The mesh this object serves. */
  mesh(): string;
  unit(unitId: string): UnitStub;
  access(): AccessStub;
}

export function leaseTimes(config: BrokerConfig): LeaseTimes {
  return { leaseMs: config.nodeLeaseMs, lostAfterMs: config.nodeLostAfterMs };
}

/** The node's last sign of life (message, close, or ping on a live socket), persisted. */
export function observe(host: MeshHost, nodeId: string): number | null {
  const pinged = pingedAt(host.ctx, nodeId);
  if (pinged !== null) host.store.nodes.observe(nodeId, pinged);
  return host.store.nodes.lastSeen(nodeId);
}

/**
 * The unit goes back to the queue, unplaced, with the detail the Unit object gave it (its plan's),
 * so the index, the unit list and the mesh feed do not keep saying "assigned to" a node it left.
 */
export function unassign(host: MeshHost, unitId: string, detail = "waiting for a node"): void {
  host.store.unassignUnit(unitId, detail, Date.now());
  host.events.unit(host.store.unit(unitId));
}
