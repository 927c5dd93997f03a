/**
 * Taking access away: a revoked credential's sockets closed, and a node an admin removed
 * disconnected and forgotten, its units ended or requeued (planNodeRemoved decides which).
 */
import { isTerminal } from "../../shared/states.js";
import { log } from "../log.js";
import { type MeshHost, unassign } from "./host.js";
import { dispatch } from "./placement.js";

/**
 * A credential was revoked (`by:token:ID`) or a node removed (`by:node:ID`): close the agent sockets
 * it opened, control sockets here and data sockets at the units still active, which are the only
 * ones a data socket can act for.
 */
export async function closeOpenedBy(host: MeshHost, tag: string): Promise<number> {
  let closed = 0;
  for (const ws of host.ctx.getWebSockets(tag)) {
    if (ws.readyState !== WebSocket.OPEN) continue;
    ws.close(4403, "credential revoked");
    closed++;
  }
  for (const unit of host.store.units()) {
    if (!isTerminal(unit.state)) closed += await host.unit(unit.id).closeOpenedBy(tag);
  }
  if (closed > 0) log("sockets:closed-on-revoke", { tag, closed });
  return closed;
}

/** An admin removed the node: its credential is revoked already; disconnect it and end its units. */
export async function removeNode(host: MeshHost, nodeId: string): Promise<boolean> {
  const { store } = host;
  const known = store.nodes.has(nodeId);
  for (const ws of host.ctx.getWebSockets(nodeId))
    if (ws.readyState === WebSocket.OPEN) ws.close(4403, "node removed by an admin");
  if (known) host.events.node(nodeId, "removed");
  for (const unit of store.activeOn(nodeId)) {
    // Not started there: it may run elsewhere (or wait for a node of that id to join again).
    const plan = await host.unit(unit.id).nodeRemoved(nodeId);
    if (plan.action === "requeue") unassign(host, unit.id, plan.detail);
  }
  store.nodes.delete(nodeId);
  if (known) log("node:removed", { node: nodeId });
  await dispatch(host);
  return known;
}
