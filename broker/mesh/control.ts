/**
 * The Mesh object's side of an agent's control socket: accepting it, the hello (joining, with a
 * credential issued; or reconnecting), disk reports, a node refusing a unit, and the close. The
 * Worker has checked the credential and the node id; admission.ts decides who gets in.
 */
import { type DiskSpace, isLowDisk } from "../../shared/disk.js";
import { type HelloMessage, decodeAgentControl } from "../../shared/protocol.js";
import { log } from "../log.js";
import { completeClose, refuse, refuseAndClose, refusedSocket, sendMessage } from "../socket.js";
import type { SocketGrant } from "../stubs.js";
import { checkHello, checkJoin } from "./admission.js";
import type { MeshHost } from "./host.js";
import { ensureLeaseCheck } from "./lease-check.js";
import { onLeave, requeueFromLeaving } from "./node-ops.js";
import { dispatch, reconcile } from "./placement.js";
import { type SocketAttachment, isLive } from "./sockets.js";

export async function acceptControl(host: MeshHost, grant: SocketGrant): Promise<Response> {
  const { node: nodeId, joining } = grant;
  if (joining) {
    const { store } = host;
    const live = isLive(host.ctx, nodeId);
    // The Access object is asked only when the answer matters.
    const credentialInUse = !live && (await host.access().credentialInUse(nodeId));
    const known = store.nodes.has(nodeId);
    // Counted only for a node new to the mesh, the one case MAX_NODES is checked.
    const admitted = checkJoin(nodeId, {
      live,
      credentialInUse,
      known,
      nodes: known ? 0 : store.nodes.count(),
      maxNodes: host.config.maxNodes,
    });
    if (!admitted.ok) return refusedSocket(admitted.error);
  }
  const pair = new WebSocketPair();
  const server = pair[1];
  // Tagged with its opener too, so that revoking that credential closes it (closeOpenedBy).
  host.ctx.acceptWebSocket(server, [nodeId, grant.opener]);
  server.serializeAttachment({ nodeId, helloed: false, joining } satisfies SocketAttachment);
  // A timer rather than the alarm: it keeps the object from hibernating for those seconds only,
  // and the sockets it watches do not outlive the object anyway (a restart drops them all).
  setTimeout(() => {
    const { helloed } = server.deserializeAttachment() as SocketAttachment;
    if (!helloed && server.readyState === WebSocket.OPEN)
      server.close(4408, `no hello within ${host.config.helloTimeoutMs} ms`);
  }, host.config.helloTimeoutMs);
  return new Response(null, { status: 101, webSocket: pair[0] });
}

export async function onControlMessage(host: MeshHost, ws: WebSocket, message: string | ArrayBuffer): Promise<void> {
  const attachment = ws.deserializeAttachment() as SocketAttachment;
  if (typeof message !== "string")
    return refuse(ws, { code: "bad_frame", message: "the control socket carries text frames only" });
  const decoded = decodeAgentControl(message);
  if (!decoded.ok) return refuse(ws, decoded.error);
  const msg = decoded.value;
  if (msg.type === "hello") return onHello(host, ws, attachment, msg);
  if (!attachment.helloed) return refuse(ws, { code: "bad_message", message: "send hello first" });
  host.store.nodes.touch(attachment.nodeId, Date.now());
  if (msg.type === "disk") return onDisk(host, attachment.nodeId, msg.disk);
  if (msg.type === "leave") return onLeave(host, attachment.nodeId, msg.reason);
  if (msg.type === "probe-result") {
    host.probes.settle(msg.id, {
      nodeId: attachment.nodeId,
      agentTime: msg.agentTime,
      receivedAt: Date.now(),
      checks: msg.checks,
    });
    return;
  }
  if (host.store.unit(msg.unit)?.node !== attachment.nodeId) {
    return refuse(ws, {
      code: "not_assigned",
      message: `unit ${msg.unit} is not assigned to node ${attachment.nodeId}`,
    });
  }
  log("unit:rejected", { unit: msg.unit, node: attachment.nodeId, code: msg.error.code });
  // Sent before its leave arrived: the unit goes back to the queue, for another node.
  if (msg.error.code === "node_leaving") return requeueFromLeaving(host, attachment.nodeId, msg.unit);
  await host.unit(msg.unit).fail(`node ${attachment.nodeId} refused the unit: ${msg.error.message}`);
}

export async function onControlClose(host: MeshHost, ws: WebSocket, code: number): Promise<void> {
  const { nodeId, helloed } = ws.deserializeAttachment() as SocketAttachment;
  if (helloed) host.store.nodes.touch(nodeId, Date.now());
  completeClose(ws, code);
  // A socket replaced by the node's newer one is not the node leaving.
  const others = host.ctx.getWebSockets(nodeId).filter((other) => other !== ws && other.readyState === WebSocket.OPEN);
  if (helloed && others.length === 0 && host.store.nodes.has(nodeId)) host.events.node(nodeId, "left");
  log("node:disconnected", { node: nodeId, code });
  await ensureLeaseCheck(host);
}

async function onHello(
  host: MeshHost,
  ws: WebSocket,
  attachment: SocketAttachment,
  hello: HelloMessage,
): Promise<void> {
  const { store, joining } = host;
  // Per node lookups only (its tag, its row): a hello costs the same at 10 or 10,000 nodes.
  const known = store.nodes.has(hello.nodeId);
  const facts = {
    live: isLive(host.ctx, hello.nodeId),
    known,
    nodes: attachment.joining && !known ? store.nodes.count() + joining.size : 0,
    maxNodes: host.config.maxNodes,
  };
  const admitted = checkHello(hello, attachment, facts);
  if (!admitted.ok) return refuseAndClose(ws, admitted.error);
  // Read before the node is stored again, which clears its outage.
  const outage = store.nodes.outage(hello.nodeId);
  let credential: string | undefined;
  if (attachment.joining) {
    joining.add(hello.nodeId);
    try {
      const issued = await host.access().issueCredential(hello.nodeId);
      if (!issued.ok) return refuseAndClose(ws, issued.error);
      credential = issued.value;
      store.nodes.upsert(hello.nodeId, hello, Date.now());
    } finally {
      joining.delete(hello.nodeId);
    }
  }
  // A reconnecting agent may find its previous socket still half-open: the newest one wins.
  // Only the node's own credential gets this far for an id that has joined.
  for (const other of host.ctx.getWebSockets(hello.nodeId)) {
    if (other !== ws) other.close(4001, "replaced by a newer connection of the same node");
  }
  ws.serializeAttachment({ ...attachment, helloed: true } satisfies SocketAttachment);
  // A join stored the node already, before its hello could be counted twice against MAX_NODES.
  if (credential === undefined) store.nodes.upsert(hello.nodeId, hello, Date.now());
  host.events.node(hello.nodeId, "joined");
  log("node:hello", {
    node: hello.nodeId,
    workTypes: hello.workTypes.map((w) => w.worktype),
    capacity: hello.capacity,
    joined: attachment.joining,
  });
  sendMessage(ws, {
    type: "welcome",
    nodeId: hello.nodeId,
    pingIntervalMs: host.config.pingIntervalMs,
    ...(credential ? { credential } : {}),
  });
  // Back from an outage: its units are no longer "unreachable" (those it no longer holds fail below).
  if (outage) {
    for (const unit of store.activeOn(hello.nodeId)) await host.unit(unit.id).nodeReachable(hello.nodeId);
  }
  await reconcile(host, ws, hello);
  await dispatch(host, hello.nodeId);
}

/** A node back above its --min-free may take the units that waited for it. */
async function onDisk(host: MeshHost, nodeId: string, disk: DiskSpace): Promise<void> {
  const before = host.store.nodes.setDisk(nodeId, disk);
  if (isLowDisk(before) !== isLowDisk(disk))
    log("node:disk", {
      node: nodeId,
      freeBytes: disk.freeBytes,
      minFreeBytes: disk.minFreeBytes,
      low: isLowDisk(disk),
    });
  if (isLowDisk(before) && !isLowDisk(disk)) await dispatch(host);
}
