/**
 * Carrying out the lease policy (lease.ts): the alarm's check of every node that holds active
 * units, the one alarm that keeps it running, and the nodes as status shows them. Live sockets'
 * ping times are persisted here, so after a broker restart a node is judged by when it was really
 * last heard, and never by the time the broker itself was away.
 */
import type { NodeStatus } from "../../shared/unit.js";
import { log } from "../log.js";
import { leftCleanly } from "./fleet.js";
import { type MeshHost, leaseTimes, observe, unassign } from "./host.js";
import { leaseVerdict, nextLeaseCheck, planLease, silence, unreachableSince } from "./lease.js";
import { liveNodes, pingedAt } from "./sockets.js";

/** The alarm's work: marks silent nodes unreachable, then lost, and tells their units. True if a unit went back to the queue. */
export async function checkLeases(host: MeshHost): Promise<boolean> {
  const { store, events, ctx } = host;
  const now = Date.now();
  const times = leaseTimes(host.config);
  let requeued = false;
  for (const nodeId of store.nodesWithActiveUnits()) {
    const seen = observe(host, nodeId);
    const silentMs = silence(seen, host.startedAt, now);
    const outage = store.nodes.outage(nodeId);
    const units = store.activeOn(nodeId);
    const plan = planLease(
      { silentMs, markedUnreachable: outage !== null, reportedLost: outage?.reportedLost ?? false, units },
      times,
    );
    if (plan.markUnreachable) {
      const since = unreachableSince(seen, host.startedAt, times);
      store.nodes.markUnreachable(nodeId, since);
      log("node:unreachable", { node: nodeId, silentMs });
      // Half-open: closing it makes the node count as gone for routing at once.
      for (const ws of ctx.getWebSockets(nodeId)) ws.close(4008, "lease expired: no ping within the lease");
      events.node(nodeId, "unreachable");
      for (const unit of units) {
        const told = await host.unit(unit.id).nodeUnreachable(nodeId, new Date(since).toISOString());
        if (told.action === "requeue") {
          unassign(host, unit.id, told.detail);
          requeued = true;
        }
      }
    }
    if (plan.reportLost) {
      store.nodes.markLostReported(nodeId);
      log("node:lost", { node: nodeId, silentMs });
      events.node(nodeId, "lost");
    }
    for (const id of plan.fail) {
      const lost = await host.unit(id).nodeLost(nodeId, silentMs);
      if (lost.action === "requeue") {
        unassign(host, id, lost.detail);
        requeued = true;
      }
    }
  }
  return requeued;
}

/** Starts the lease check if none is set: a node now holds active units, or one left. */
export async function ensureLeaseCheck(host: MeshHost): Promise<void> {
  if ((await host.ctx.storage.getAlarm()) === null) await armLeaseCheck(host);
}

/** Sets the alarm for the next lease check (after one ran), or clears it when no node holds active units. */
export async function armLeaseCheck(host: MeshHost): Promise<void> {
  const { store } = host;
  const now = Date.now();
  const times = leaseTimes(host.config);
  const nodes = store.nodesWithActiveUnits();
  const silences = nodes.map((node) => silence(observe(host, node) ?? now, host.startedAt, now));
  const lostAfters = new Set([
    times.lostAfterMs,
    ...nodes.flatMap((node) => store.activeOn(node).map((u) => u.lostAfterMs ?? times.lostAfterMs)),
  ]);
  const at = nextLeaseCheck(silences, now, times.leaseMs, [...lostAfters]);
  if (at === null) await host.ctx.storage.deleteAlarm();
  else await host.ctx.storage.setAlarm(at);
}

/** The nodes as status shows them: connected, or judged by their silence. */
export function nodeStatuses(host: MeshHost): NodeStatus[] {
  const now = Date.now();
  const times = leaseTimes(host.config);
  return host.store.nodes.list(liveNodes(host.ctx)).map(({ outageSince, leftAt, ...node }) => {
    const seen = Math.max(node.lastSeen ? Date.parse(node.lastSeen) : 0, pingedAt(host.ctx, node.nodeId) ?? 0);
    // A node that said it was leaving, and went with nothing on it, is neither unreachable nor lost.
    const left = leftCleanly({ connected: node.connected, leftAt, activeUnits: node.activeUnits, outageSince });
    const verdict = node.connected || left ? "alive" : leaseVerdict(silence(seen || null, host.startedAt, now), times);
    const since = outageSince ?? (verdict === "alive" ? null : unreachableSince(seen || null, host.startedAt, times));
    return {
      ...node,
      lastSeen: seen ? new Date(seen).toISOString() : null,
      unreachable: verdict !== "alive",
      unreachableSince: verdict === "alive" || since === null ? null : new Date(since).toISOString(),
      lost: verdict === "lost",
      left,
    };
  });
}
