/**
 * The Unit object's side of its data socket with the one agent running the unit: attach, payload
 * pulls, results frames (acknowledged once durable), started and finished. The object passes in
 * what it owns (storage, sockets, the one `move` that changes state) as a UnitHost.
 */
import { CHUNK_BYTES, decodeFrame, encodeFrame } from "../../shared/frames.js";
import { type AgentDataMessage, type Assignment, PROTOCOL_VERSION } from "../../shared/protocol.js";
import { type UnitState, isTerminal } from "../../shared/states.js";
import { log, logError } from "../log.js";
import { refuse, refuseAndClose, sendMessage } from "../socket.js";
import type { SocketGrant } from "../stubs.js";
import { finishEvents, ingestEvents } from "./event-log.js";
import { lateExitDetail, outcome, planFrame, planPull } from "./logic.js";
import type { PendingResults } from "./results-batch.js";
import { expiredDetail, isExpired } from "./schedule.js";
import { type UnitDoc, type UnitStore, payloadStreaming } from "./store.js";
import { resultsPacer, turnToWrite } from "./write-pacer.js";

export const AGENT_TAG = "agent";

interface AgentAttachment {
  nodeId: string;
  /** Set once the assigned node attached on this socket; only such a socket may act for the unit. */
  attached: boolean;
  /** Where this socket's next payload pull must start (planPull); absent before its first. */
  pullNext?: number;
  /**
   * Payload bytes sent on this socket, up to here. Behind pullNext only while a streaming payload
   * has not yet arrived that far: the rest goes out as it arrives (feedAgents).
   */
  sentTo?: number;
}

export interface UnitHost {
  readonly store: UnitStore;
  readonly ctx: DurableObjectState;
  move(doc: UnitDoc, to: UnitState, detail: string, extra?: Partial<UnitDoc>): Promise<void>;
  /** Saves a change that keeps the state, and tells followers and the Mesh. */
  annotate(doc: UnitDoc): Promise<void>;
  /** Followers waiting for new results. */
  wake(): void;
  /** Results frames taken in, not yet written nor acknowledged (results-batch.ts). */
  readonly pending: PendingResults;
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

export async function onAgentMessage(
  host: UnitHost,
  ws: WebSocket,
  doc0: UnitDoc,
  msg: AgentDataMessage,
): Promise<void> {
  let doc = doc0;
  const { nodeId, attached } = ws.deserializeAttachment() as AgentAttachment;
  // Every other message sees the results as they stand: an attach resumes from the stored end, a
  // finished is checked against it.
  if (host.pending.size > 0) {
    await writePending(host);
    doc = host.store.doc() ?? doc;
  }
  if (msg.type === "attach") return attach(host, ws, doc, nodeId, msg);
  if (!attached) return refuseAndClose(ws, { code: "not_assigned", message: "attach first" });
  switch (msg.type) {
    case "payload-pull": {
      const attachment = ws.deserializeAttachment() as AgentAttachment;
      const payload = { size: doc.payloadSize, complete: doc.payloadComplete, framed: doc.payloadFramed };
      const plan = planPull(attachment.pullNext ?? null, payload, msg.offset, msg.length);
      if (plan.action === "refuse") return refuseAndClose(ws, { code: "window_exceeded", message: plan.message });
      const sentTo = attachment.pullNext === undefined ? msg.offset : (attachment.sentTo ?? msg.offset);
      ws.serializeAttachment({ ...attachment, pullNext: plan.end, sentTo } satisfies AgentAttachment);
      return sendAvailable(host.store, ws, doc.payloadSize);
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

function attach(
  host: UnitHost,
  ws: WebSocket,
  doc: UnitDoc,
  nodeId: string,
  msg: Extract<AgentDataMessage, { type: "attach" }>,
): void {
  if (msg.protocol !== PROTOCOL_VERSION) {
    return refuseAndClose(ws, { code: "unsupported_protocol", message: `protocol ${msg.protocol} is not supported` });
  }
  if (doc.node !== nodeId || msg.nodeId !== nodeId) {
    return refuseAndClose(ws, {
      code: "not_assigned",
      message: `unit ${doc.id} is not assigned to node ${msg.nodeId}`,
    });
  }
  // A reconnecting agent may find its previous socket still half-open: the newest one wins.
  for (const other of host.ctx.getWebSockets(AGENT_TAG)) {
    if (other !== ws && isAttached(other)) other.close(4001, "replaced by a newer connection");
  }
  ws.serializeAttachment({ nodeId, attached: true } satisfies AgentAttachment);
  if (doc.attachedAt === null) host.store.save({ ...doc, attachedAt: new Date().toISOString() });
  sendMessage(ws, {
    type: "attached",
    unit: assignmentOf(doc),
    state: doc.state,
    resultsOffset: doc.stdoutSize,
    cancel: doc.cancelRequested || isTerminal(doc.state),
    exitRecorded: doc.exitReported,
  });
}

/** What a node needs to know of the unit to run it (in `attached`, and in an inline start). */
export function assignmentOf(doc: UnitDoc): Assignment {
  return {
    id: doc.id,
    mesh: doc.mesh,
    worktype: doc.worktype,
    params: doc.params,
    payloadSize: doc.payloadSize,
    ...(payloadStreaming(doc) ? { payloadStreaming: true } : {}),
    signature: doc.signature,
    targetNode: doc.targetNode,
  };
}

/**
 * A streaming payload grew to `size` bytes: each attached socket is sent what it pulled and had
 * not yet been sent. With `ended`, the payload is whole at `size`, and the agent is told so.
 */
export function feedAgents(host: Pick<UnitHost, "ctx" | "store">, size: number, ended: boolean): void {
  for (const ws of host.ctx.getWebSockets(AGENT_TAG)) {
    if (!isAttached(ws)) continue;
    sendAvailable(host.store, ws, size);
    if (ended) sendMessage(ws, { type: "payload-end", size });
  }
}

/** Sends the socket's pulled bytes that the payload holds now (its first `size` bytes) and it was not sent yet. */
function sendAvailable(store: UnitStore, ws: WebSocket, size: number): void {
  const attachment = ws.deserializeAttachment() as AgentAttachment;
  if (attachment.pullNext === undefined) return;
  const from = attachment.sentTo ?? attachment.pullNext;
  const to = Math.min(attachment.pullNext, size);
  if (to <= from) return;
  sendPayload(store, ws, from, to);
  ws.serializeAttachment({ ...attachment, sentTo: to } satisfies AgentAttachment);
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
  const plan = planFrame(host.pending.end(doc.stdoutSize), frame.offset, frame.data.byteLength);
  if (plan.action === "window") {
    return refuseAndClose(ws, {
      code: "window_exceeded",
      message: `results frame at ${frame.offset} is behind the ack window (from ${plan.oldest})`,
    });
  }
  if (plan.action === "gap") {
    return refuse(ws, {
      code: "results_gap",
      message: `results frame at ${frame.offset}, expected ${plan.expected}: resend from the last ack`,
    });
  }
  if (plan.action === "append") {
    host.pending.add(doc.stdoutSize, host.pending.end(doc.stdoutSize), frame.data.subarray(plan.skip));
    // Not awaited: the next frames must come in while this write's sync is under way, to join the next write.
    void writePending(host);
    return;
  }
  // A resend of bytes already taken: acknowledge what is durable, once the pending ones are.
  await writePending(host);
  sendMessage(ws, { type: "results-ack", offset: host.store.doc()?.stdoutSize ?? doc.stdoutSize });
}

/**
 * Writes the pending results frames and acknowledges them once durable: an ack never covers a byte
 * a crash could lose. Each write waits for its turn (write-pacer.ts); frames that arrive meanwhile
 * are written next, together (group commit, see results-batch.ts). Settles when nothing is pending
 * any more.
 */
export function writePending(host: UnitHost): Promise<void> {
  const pending = host.pending;
  if (pending.writing) return pending.writing;
  if (pending.size === 0) return Promise.resolve();
  pending.writing = (async () => {
    try {
      while (pending.size > 0) {
        // Leaves the thread idle first, half as long as the last write kept it busy (write-pacer.ts):
        // without it a full-speed stream starves every follower and request until it ends.
        await turnToWrite();
        const start = Date.now();
        await writeBatch(host);
        resultsPacer.wrote(start, Date.now());
      }
    } catch (error) {
      // Its frames are lost and never acknowledged: drop the agent's socket, so that it comes back
      // and sends them again from the last ack rather than wait for an ack that will never come.
      pending.take();
      logError("unit:results-write-failed", error, { unit: host.store.doc()?.id });
      for (const agent of host.ctx.getWebSockets(AGENT_TAG)) agent.close(1011, "results write failed");
    } finally {
      // Never before the assignment below: with frames pending the loop awaits at least once.
      pending.writing = null;
    }
  })();
  return pending.writing;
}

/** One transaction of what is pending, then its ack. Dropped once the unit takes no more results (released, or its exit is in). */
async function writeBatch(host: UnitHost): Promise<void> {
  const chunks = host.pending.take();
  const doc = host.store.doc();
  if (!doc || doc.state === "Released" || (isTerminal(doc.state) && doc.exitReported)) return;
  let end = doc.stdoutSize;
  const before = host.store.latestResults();
  for (const chunk of chunks) {
    // Taken against this same end: pending frames start where the stored ones stop.
    if (chunk.offset !== end) throw new Error(`pending results at ${chunk.offset}, stored end ${end}`);
    host.store.append("results", end, chunk.data);
    end += chunk.data.byteLength;
  }
  host.store.save({ ...doc, stdoutSize: end });
  ingestEvents(host.store, chunks, { before });
  await host.ctx.storage.sync();
  host.wake();
  // Every write is acknowledged, even with frames pending behind it: the agent refills its window
  // as acks come (agent/results-upload.ts), so its next frames travel while these are written.
  // One ack a write, not a frame: frames that came during a write go together in the next.
  for (const agent of host.ctx.getWebSockets(AGENT_TAG)) {
    if (agent.readyState === WebSocket.OPEN && isAttached(agent))
      sendMessage(agent, { type: "results-ack", offset: end });
  }
}

async function onFinished(
  host: UnitHost,
  ws: WebSocket,
  doc: UnitDoc,
  msg: Extract<AgentDataMessage, { type: "finished" }>,
): Promise<void> {
  if (doc.state === "Released" || (isTerminal(doc.state) && doc.exitReported)) {
    return sendMessage(ws, { type: "closed", state: doc.state, exitRecorded: doc.exitReported });
  }
  if (msg.resultsSize !== doc.stdoutSize) {
    return refuse(ws, {
      code: "results_incomplete",
      message: `finished with ${msg.resultsSize} bytes of results but ${doc.stdoutSize} are stored`,
    });
  }
  // Late: how the command itself ended, whatever was asked of it meanwhile.
  if (isTerminal(doc.state))
    return onLateFinish(host, ws, doc, msg, outcome({ ...msg, canceled: false }, false).detail);
  const { state, detail } = outcome(msg, doc.cancelRequested);
  // A `started` lost with a dropped link leaves the unit Pending; it did run, so pass through Running.
  if (doc.state === "Pending" && !msg.detail)
    await host.move(doc, "Running", `running on ${doc.node}`, { startedAt: new Date().toISOString() });
  await host.move(host.store.doc()!, state, detail, {
    exitCode: msg.exitCode,
    exitReported: true,
    outputCut: msg.outputCut ?? null,
  });
  log("unit:finished", {
    unit: doc.id,
    state,
    detail,
    bytes: doc.stdoutSize,
    resultsFrames: host.pending.frames,
    resultsWrites: host.pending.writes,
  });
}

/**
 * The node reports how the command ended after the unit was judged (failed "node lost" while the
 * node was away). The state stays as judged; the real exit is kept beside it, with every byte.
 */
async function onLateFinish(
  host: UnitHost,
  ws: WebSocket,
  doc: UnitDoc,
  msg: Extract<AgentDataMessage, { type: "finished" }>,
  exit: string,
): Promise<void> {
  const lateBytes = doc.stdoutSize - (doc.resultsAtVerdict ?? doc.stdoutSize);
  const lateExit = {
    exitCode: msg.exitCode,
    signal: msg.signal,
    detail: exit,
    at: new Date().toISOString(),
    lateBytes,
  };
  finishEvents(host.store);
  await host.annotate({
    ...doc,
    lateExit,
    exitReported: true,
    detail: lateExitDetail(doc.detail, doc.node, exit, lateBytes),
  });
  await host.ctx.storage.sync();
  sendMessage(ws, { type: "closed", state: doc.state, exitRecorded: true });
  log("unit:late-exit", { unit: doc.id, state: doc.state, exit, lateBytes });
}
