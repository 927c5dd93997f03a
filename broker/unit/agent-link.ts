/**
 * The Unit object's side of its data socket with the one agent running the unit: attach, payload
 * pulls, results frames (acknowledged once durable), started and finished. The object passes in
 * what it owns (storage, sockets, the one `move` that changes state) as a UnitHost.
 */
import { CHUNK_BYTES, decodeFrame, encodeFrame } from "../../shared/frames.js";
import { type AgentDataMessage, PROTOCOL_VERSION } from "../../shared/protocol.js";
import { type UnitState, isTerminal } from "../../shared/states.js";
import { log } from "../log.js";
import { refuse, refuseAndClose, sendMessage } from "../socket.js";
import type { SocketGrant } from "../stubs.js";
import { finishEvents, ingestEvents } from "./event-log.js";
import { lateExitDetail, outcome, planFrame, planPull } from "./logic.js";
import { expiredDetail, isExpired } from "./schedule.js";
import type { UnitDoc, UnitStore } from "./store.js";

export const AGENT_TAG = "agent";

interface AgentAttachment {
  nodeId: string;
  /** Set once the assigned node attached on this socket; only such a socket may act for the unit. */
  attached: boolean;
  /** Where this socket's next payload pull must start (planPull); absent before its first. */
  pullNext?: number;
}

export interface UnitHost {
  readonly store: UnitStore;
  readonly ctx: DurableObjectState;
  move(doc: UnitDoc, to: UnitState, detail: string, extra?: Partial<UnitDoc>): Promise<void>;
  /** Saves a change that keeps the state, and tells followers and the Mesh. */
  annotate(doc: UnitDoc): Promise<void>;
  /** Followers waiting for new results. */
  wake(): void;
}

export function isAttached(ws: WebSocket): boolean {
  return (ws.deserializeAttachment() as AgentAttachment).attached;
}

/** The Worker has checked that the grant's node is the caller's own node (or that an admin acts for it). */
export function acceptAgent(ctx: DurableObjectState, grant: SocketGrant): Response {
  const pair = new WebSocketPair();
  // Tagged with its opener too, so that revoking that credential closes it.
  ctx.acceptWebSocket(pair[1], [AGENT_TAG, grant.opener]);
  pair[1].serializeAttachment({ nodeId: grant.node, attached: false } satisfies AgentAttachment);
  return new Response(null, { status: 101, webSocket: pair[0] });
}

export async function onAgentMessage(host: UnitHost, ws: WebSocket, doc: UnitDoc, msg: AgentDataMessage): Promise<void> {
  const { nodeId, attached } = ws.deserializeAttachment() as AgentAttachment;
  if (msg.type === "attach") return attach(host, ws, doc, nodeId, msg);
  if (!attached) return refuseAndClose(ws, { code: "not_assigned", message: "attach first" });
  switch (msg.type) {
    case "payload-pull": {
      const attachment = ws.deserializeAttachment() as AgentAttachment;
      const plan = planPull(attachment.pullNext ?? null, doc.payloadSize, msg.offset, msg.length);
      if (plan.action === "refuse") return refuseAndClose(ws, { code: "window_exceeded", message: plan.message });
      ws.serializeAttachment({ ...attachment, pullNext: plan.end } satisfies AgentAttachment);
      return sendPayload(host.store, ws, msg.offset, plan.end);
    }
    case "started":
      if (isExpired(doc, Date.now())) {
        // Placed before its expiry alarm was lost (schedule.ts): it must not run after its TTL.
        await host.move(doc, "Failed", expiredDetail(doc));
        sendMessage(ws, { type: "cancel" });
      } else if (doc.state === "Pending") {
        await host.move(doc, "Running", `running on ${nodeId}`, { startedAt: new Date().toISOString() });
      } else if (isTerminal(doc.state)) {
        sendMessage(ws, { type: "cancel" });
      }
      return;
    case "finished":
      return onFinished(host, ws, doc, msg);
  }
}

function attach(host: UnitHost, ws: WebSocket, doc: UnitDoc, nodeId: string, msg: Extract<AgentDataMessage, { type: "attach" }>): void {
  if (msg.protocol !== PROTOCOL_VERSION) {
    return refuseAndClose(ws, { code: "unsupported_protocol", message: `protocol ${msg.protocol} is not supported` });
  }
  if (doc.node !== nodeId || msg.nodeId !== nodeId) {
    return refuseAndClose(ws, { code: "not_assigned", message: `unit ${doc.id} is not assigned to node ${msg.nodeId}` });
  }
  // A reconnecting agent may find its previous socket still half-open: the newest one wins.
  for (const other of host.ctx.getWebSockets(AGENT_TAG)) {
    if (other !== ws && isAttached(other)) other.close(4001, "replaced by a newer connection");
  }
  ws.serializeAttachment({ nodeId, attached: true } satisfies AgentAttachment);
  if (doc.attachedAt === null) host.store.save({ ...doc, attachedAt: new Date().toISOString() });
  sendMessage(ws, {
    type: "attached",
    unit: {
      id: doc.id,
      mesh: doc.mesh,
      worktype: doc.worktype,
      params: doc.params,
      payloadSize: doc.payloadSize,
      signature: doc.signature,
      targetNode: doc.targetNode,
    },
    state: doc.state,
    resultsOffset: doc.stdoutSize,
    cancel: doc.cancelRequested || isTerminal(doc.state),
    exitRecorded: doc.exitReported,
  });
}

function sendPayload(store: UnitStore, ws: WebSocket, offset: number, end: number): void {
  let position = offset;
  while (position < end) {
    const chunk = store.readAt("payload", position);
    if (!chunk) break;
    const slice = chunk.subarray(0, Math.min(chunk.byteLength, end - position, CHUNK_BYTES));
    ws.send(encodeFrame("payload", position, slice));
    position += slice.byteLength;
  }
}

export async function onAgentResults(host: UnitHost, ws: WebSocket, doc: UnitDoc, message: ArrayBuffer): Promise<void> {
  const decoded = decodeFrame(message);
  if (!decoded.ok) return refuse(ws, decoded.error);
  const frame = decoded.value;
  if (frame.kind !== "results") return refuse(ws, { code: "bad_frame", message: "agents send results frames only" });
  // A released unit, or one whose exit is in, takes no more output. One judged while its node was
  // away (node lost) still takes what the node wrote meanwhile: it is stored, not thrown away.
  if (doc.state === "Released" || (isTerminal(doc.state) && doc.exitReported)) {
    return sendMessage(ws, { type: "closed", state: doc.state, exitRecorded: doc.exitReported });
  }
  const plan = planFrame(doc.stdoutSize, frame.offset, frame.data.byteLength);
  if (plan.action === "window") {
    return refuseAndClose(ws, { code: "window_exceeded", message: `results frame at ${frame.offset} is behind the ack window (from ${plan.oldest})` });
  }
  if (plan.action === "gap") {
    return refuse(ws, { code: "results_gap", message: `results frame at ${frame.offset}, expected ${plan.expected}: resend from the last ack` });
  }
  if (plan.action === "append") {
    const data = frame.data.subarray(plan.skip);
    const end = doc.stdoutSize + data.byteLength;
    host.store.append("results", doc.stdoutSize, data);
    host.store.save({ ...doc, stdoutSize: end });
    ingestEvents(host.store, { offset: doc.stdoutSize, data });
    // Acknowledge only what is durable: wait for the write to be committed before the ack leaves.
    await host.ctx.storage.sync();
    host.wake();
    return sendMessage(ws, { type: "results-ack", offset: end });
  }
  sendMessage(ws, { type: "results-ack", offset: doc.stdoutSize });
}

async function onFinished(host: UnitHost, ws: WebSocket, doc: UnitDoc, msg: Extract<AgentDataMessage, { type: "finished" }>): Promise<void> {
  if (doc.state === "Released" || (isTerminal(doc.state) && doc.exitReported)) {
    return sendMessage(ws, { type: "closed", state: doc.state, exitRecorded: doc.exitReported });
  }
  if (msg.resultsSize !== doc.stdoutSize) {
    return refuse(ws, { code: "results_incomplete", message: `finished with ${msg.resultsSize} bytes of results but ${doc.stdoutSize} are stored` });
  }
  // Late: how the command itself ended, whatever was asked of it meanwhile.
  if (isTerminal(doc.state)) return onLateFinish(host, ws, doc, msg, outcome({ ...msg, canceled: false }, false).detail);
  const { state, detail } = outcome(msg, doc.cancelRequested);
  // A `started` lost with a dropped link leaves the unit Pending; it did run, so pass through Running.
  if (doc.state === "Pending" && !msg.detail) await host.move(doc, "Running", `running on ${doc.node}`, { startedAt: new Date().toISOString() });
  await host.move(host.store.doc()!, state, detail, { exitCode: msg.exitCode, exitReported: true, outputCut: msg.outputCut ?? null });
  log("unit:finished", { unit: doc.id, state, detail, bytes: doc.stdoutSize });
}

/**
 * The node reports how the command ended after the unit was judged (failed "node lost" while the
 * node was away). The state stays as judged; the real exit is kept beside it, with every byte.
 */
async function onLateFinish(host: UnitHost, ws: WebSocket, doc: UnitDoc, msg: Extract<AgentDataMessage, { type: "finished" }>, exit: string): Promise<void> {
  const lateBytes = doc.stdoutSize - (doc.resultsAtVerdict ?? doc.stdoutSize);
  const lateExit = { exitCode: msg.exitCode, signal: msg.signal, detail: exit, at: new Date().toISOString(), lateBytes };
  finishEvents(host.store);
  await host.annotate({ ...doc, lateExit, exitReported: true, detail: lateExitDetail(doc.detail, doc.node, exit, lateBytes) });
  await host.ctx.storage.sync();
  sendMessage(ws, { type: "closed", state: doc.state, exitRecorded: true });
  log("unit:late-exit", { unit: doc.id, state: doc.state, exit, lateBytes });
}
