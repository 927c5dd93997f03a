/**
 * What admins and agents do to a node beyond membership (docs/fleet.md): pause and resume, the
 * agent's leave, and the health check through the node. The decisions are in fleet.ts and
 * shared/health.ts; this carries them out.
 */
import { type Result, fail, ok } from "../../shared/errors.js";
import { type HealthReport, healthFailure, judgeHealth } from "../../shared/health.js";
import { log } from "../log.js";
import { sendMessage } from "../socket.js";
import { type MeshHost, unassign } from "./host.js";
import { dispatch } from "./placement.js";
import { helloedSockets } from "./sockets.js";

/** A paused node finishes its units and takes no new ones; resumed, it may take the queue's. */
export async function pauseNode(
  host: MeshHost,
  nodeId: string,
  paused: boolean,
): Promise<Result<{ node: string; paused: boolean }>> {
  if (!host.store.nodes.setPaused(nodeId, paused))
    return fail("unknown_node", `no node ${nodeId} in mesh ${host.mesh()}`);
  host.events.node(nodeId, paused ? "paused" : "resumed");
  log(paused ? "node:paused" : "node:resumed", { node: nodeId });
  if (!paused) await dispatch(host);
  return ok({ node: nodeId, paused });
}

/** The agent is leaving for good: no more units for it; once it closes, it is shown as left. */
export function onLeave(host: MeshHost, nodeId: string, reason: string): void {
  host.store.nodes.markLeaving(nodeId, Date.now());
  host.events.node(nodeId, "leaving");
  log("node:leaving", { node: nodeId, reason });
}

/** A leaving agent got an assignment sent before its leave arrived: the unit runs elsewhere. */
export async function requeueFromLeaving(host: MeshHost, nodeId: string, unitId: string): Promise<void> {
  const plan = await host.unit(unitId).nodeLeaving(nodeId);
  if (plan.action === "requeue") unassign(host, unitId, plan.detail);
  await dispatch(host);
}

/**
 * A health check through the node: its verdict is stored, shown in status, and a failed one holds
 * the node (no new units) until a later check passes.
 */
export async function checkNode(host: MeshHost, nodeId: string): Promise<Result<HealthReport>> {
  const sockets = helloedSockets(host.ctx, nodeId);
  if (sockets.length === 0)
    return fail("node_not_connected", `node ${nodeId} is not connected; a health check runs on the node`);
  const sentAt = Date.now();
  const probe = host.probes.start(nodeId);
  for (const ws of sockets) sendMessage(ws, { type: "probe", id: probe.id });
  const answer = await probe.answer;
  if (!answer)
    return fail("probe_timeout", `node ${nodeId} did not answer the health check (is its agent older than the check?)`);
  const report = judgeHealth(answer.checks, { sentAt, receivedAt: answer.receivedAt, agentTime: answer.agentTime });
  const before = host.store.nodes.health(nodeId);
  host.store.nodes.setHealth(nodeId, JSON.stringify(report));
  host.events.node(nodeId, report.ok ? "healthy" : "unhealthy");
  log("node:checked", { node: nodeId, ok: report.ok, failed: healthFailure(report), skewMs: report.skewMs });
  if (report.ok && before && !before.ok) await dispatch(host);
  return ok(report);
}
