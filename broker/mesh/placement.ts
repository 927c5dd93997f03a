/**
 * Carrying out placement (dispatch.ts decides): assigning queued units to connected nodes, and
 * after a node's reconnect, what it missed. Placements are written before any await, so a
 * dispatch that interleaves with another (during the RPCs below) can never place a unit twice.
 */
import { fail } from "../../shared/errors.js";
import type { HelloMessage } from "../../shared/protocol.js";
import { log } from "../log.js";
import { sendMessage } from "../socket.js";
import { planQueue } from "./dispatch.js";
import { type MeshHost, observe, unassign } from "./host.js";
import { ensureLeaseCheck } from "./lease-check.js";
import { helloedSockets, liveView } from "./sockets.js";

/**
 * Places what the queue holds. `onlyNode`: a node that just said hello, the one new capacity there
 * is (every earlier change ran a dispatch of its own), so that a reconnect storm of n nodes costs
 * O(n) and not O(n²). A unit whose assignment the Unit object refused waits for the next full pass
 * (a unit ready or ended, a lease, a disk report, a removal), no longer for any node's hello. With
 * an empty queue nothing is read of the nodes at all.
 */
export async function dispatch(host: MeshHost, onlyNode: string | null = null): Promise<void> {
  const { store, events } = host;
  const queue = store.readyQueue();
  if (queue.size === 0) return;
  const now = Date.now();
  const placements = planQueue(queue, store.nodes.connectedSlots(liveView(host.ctx), onlyNode), now);
  for (const p of placements) store.assignUnit(p.unitId, p.nodeId, now);
  for (const p of placements) {
    const unit = store.unit(p.unitId);
    if (!unit) continue;
    const accepted = await host
      .unit(p.unitId)
      .assign(p.nodeId, { inline: store.nodes.startsInline(p.nodeId, unit.worktype) })
      .catch((error: unknown) => fail("internal", error instanceof Error ? error.message : String(error)));
    if (!accepted.ok) {
      // Leave the index as the Unit object sees it: unplaced, so a later dispatch may retry.
      unassign(host, p.unitId);
      log("unit:assign-refused", { unit: p.unitId, ...accepted.error });
      continue;
    }
    log("unit:assign", { unit: p.unitId, node: p.nodeId });
    host.metrics.pickedUp(unit.worktype, now - unit.createdAt);
    events.unit(store.unit(p.unitId), `assigned to ${p.nodeId}`);
    const start = accepted.value ? { start: accepted.value } : {};
    for (const ws of helloedSockets(host.ctx, p.nodeId))
      sendMessage(ws, { type: "assign", unitId: p.unitId, worktype: unit.worktype, ...start });
    // The node's stored last_seen may be hours old (pings are not stored as they come): bring it
    // up to date before its lease starts to matter.
    observe(host, p.nodeId);
  }
  if (placements.length > 0) await ensureLeaseCheck(host);
}

/** After a reconnect: re-send assignments the agent never saw; fail units it no longer has. */
export async function reconcile(host: MeshHost, ws: WebSocket, hello: HelloMessage): Promise<void> {
  const held = new Set(hello.units);
  for (const unit of host.store.activeOn(hello.nodeId)) {
    if (held.has(unit.id)) continue;
    if (unit.state === "Pending") sendMessage(ws, { type: "assign", unitId: unit.id, worktype: unit.worktype });
    else await host.unit(unit.id).fail(`node ${hello.nodeId} reconnected without the unit (agent restarted)`);
  }
}
