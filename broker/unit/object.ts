/**
 * The Unit Durable Object: one per unit. It holds the unit's payload, its results log and status,
 * serves result followers, and talks to the one agent running the unit over a data socket
 * (agent-link.ts).
 * State changes are reported to the Mesh object, which keeps the mesh-wide index.
 */
import { DurableObject } from "cloudflare:workers";
import { formatDuration } from "../../shared/duration.js";
import { type ErrorBody, type Result, fail, ok } from "../../shared/errors.js";
import { type BrokerDataMessage, PING, PONG, decodeAgentData, encode } from "../../shared/protocol.js";
import { STATE_NUMBER, type UnitState, isTerminal, transition } from "../../shared/states.js";
import type { UnitRecord } from "../../shared/unit.js";
import { type BrokerConfig, brokerConfig } from "../config.js";
import { PageCache, Waiters } from "../feed.js";
import { log, logError } from "../log.js";
import { completeClose, refusedSocket } from "../socket.js";
import { AGENT_TAG, type UnitHost, acceptAgent, isAttached, onAgentMessage, onAgentResults } from "./agent-link.js";
import { artifactsResponse } from "./artifacts.js";
import { type LostPlan, type UnreachablePlan, placedDetail, planNodeLost, planNodeUnreachable } from "./logic.js";
import { eventsResponse, ingestEvents } from "./event-log.js";
import { INITIAL_PARSE } from "./events.js";
import { ingestPayload } from "./payload.js";
import { resultsStream } from "./results.js";
import { SYNC_RETRY_MS, dueActions, nextAlarm } from "./schedule.js";
import { type UnitDoc, UnitStore, publicRecord } from "./store.js";

export interface InitUnit {
  mesh: string;
  id: string;
  worktype: string;
  targetNode: string | null;
  params: Record<string, string>;
  /** Time to live: fail "expired" unless started within this many ms of submission. */
  ttlMs: number | null;
  /** Its own NODE_LOST_AFTER (ms); null: the broker's. */
  lostAfterMs: number | null;
  signature: string | null;
  origin: string | null;
  tags: string[];
  priority: number;
}

export class UnitObject extends DurableObject<Env> {
  private readonly store: UnitStore;
  private readonly config: BrokerConfig;
  private readonly waiters = new Waiters();
  private readonly pages = new PageCache();
  /** A payload upload is streaming into this instance; a retried POST must not interleave with it. */
  private uploading = false;
  /** What the data-socket handlers (agent-link.ts) may use; not RPC methods, so not public. */
  private readonly host: UnitHost;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.store = new UnitStore(ctx.storage.sql);
    this.host = {
      store: this.store,
      ctx,
      move: (doc, to, detail, extra) => this.move(doc, to, detail, extra),
      annotate: (doc) => this.annotate(doc),
      send: (ws, message) => this.send(ws, message),
      refuse: (ws, error, close) => this.refuse(ws, error, close),
      wake: () => this.wake(),
    };
    this.config = brokerConfig(env);
    ctx.setWebSocketAutoResponse(new WebSocketRequestResponsePair(PING, PONG));
  }

  async init(input: InitUnit): Promise<UnitRecord> {
    const existing = this.store.doc();
    if (existing) return publicRecord(existing);
    const { ttlMs, ...fields } = input;
    const now = Date.now();
    const doc: UnitDoc = {
      ...fields,
      node: null,
      state: "Pending",
      stateNumber: STATE_NUMBER.Pending,
      detail: "receiving payload",
      payloadSize: 0,
      stdoutSize: 0,
      exitCode: null,
      createdAt: new Date(now).toISOString(),
      startedAt: null,
      finishedAt: null,
      expiresAt: ttlMs === null ? null : new Date(now + ttlMs).toISOString(),
      signed: fields.signature !== null,
      nodeUnreachableSince: null,
      lateExit: null,
      outputCut: null,
      exitReported: false,
      resultsAtVerdict: null,
      payloadComplete: false,
      cancelRequested: false,
      attachedAt: null,
      releasedAt: null,
      meshSynced: true,
      parse: INITIAL_PARSE,
    };
    this.store.save(doc);
    await this.schedule();
    return publicRecord(doc);
  }

  override async fetch(request: Request): Promise<Response> {
    const url = new URL(request.url);
    const doc = this.store.doc();
    if (!doc) {
      // An agent must hear "unknown unit" to let go of it; a refused handshake only makes it retry.
      if (url.pathname.endsWith("/data")) return refusedSocket({ code: "unknown_unit", message: "no such unit: it was released and forgotten" });
      return errorResponse({ code: "unknown_unit", message: "no such unit" }, 404);
    }
    if (url.pathname.endsWith("/payload") && request.method === "POST") {
      return this.receivePayload(request, doc, url.searchParams.get("retry") === "1");
    }
    const reading = /\/(results|events|artifacts)$/.exec(url.pathname)?.[1];
    if (reading && doc.state === "Released") {
      return errorResponse({ code: "unit_released", message: `unit ${doc.id} was released; its ${reading} are gone` }, 410);
    }
    // The Worker sets `redact` for readers that may not see secrets.
    const redact = url.searchParams.get("redact") === "1";
    if (reading === "results") {
      const follow = url.searchParams.get("follow") === "1";
      return new Response(
        resultsStream(this.store, Number(url.searchParams.get("offset") ?? 0), follow, (signal) => this.waiters.wait(signal)),
        {
          headers: { "content-type": "application/octet-stream", "x-unit-state": doc.state },
        },
      );
    }
    if (reading === "events") return eventsResponse(this.store, this.pages, this.waiters, request, redact, this.config.sseKeepaliveMs);
    if (reading === "artifacts") return artifactsResponse(this.store, doc, redact);
    if (url.pathname.endsWith("/data")) return acceptAgent(this.ctx, url.searchParams.get("node") ?? "", url.searchParams.get("opener"));
    return errorResponse({ code: "unknown_route", message: "no such unit route" }, 404);
  }

  /** The Mesh object passes on a revocation: close the data sockets that credential opened. */
  async closeOpenedBy(tag: string): Promise<number> {
    const sockets = this.ctx.getWebSockets(tag).filter((ws) => ws.readyState === WebSocket.OPEN);
    for (const ws of sockets) ws.close(4403, "credential revoked");
    return sockets.length;
  }

  async status(): Promise<Result<UnitRecord>> {
    const doc = this.store.doc();
    return doc ? ok(publicRecord(doc)) : fail("unknown_unit", "no such unit");
  }

  /** Called by the Mesh when it places the unit on a node. Refused once the unit left Pending. */
  async assign(nodeId: string): Promise<Result<void>> {
    const doc = this.store.doc();
    if (!doc) return fail("unknown_unit", "no such unit");
    if (doc.state !== "Pending") return fail("illegal_transition", `unit is ${doc.state}`);
    this.store.save({ ...doc, node: nodeId, detail: `assigned to ${nodeId}` });
    return ok(undefined);
  }

  async cancel(): Promise<Result<UnitRecord>> {
    const doc = this.store.doc();
    if (!doc) return fail("unknown_unit", "no such unit");
    if (doc.state === "Released") return fail("unit_released", "the unit was released");
    if (isTerminal(doc.state)) return ok(publicRecord(doc));
    if (doc.state === "Pending") {
      await this.move(doc, "Canceled", "canceled before it started");
      return ok(publicRecord(this.store.doc()!));
    }
    this.store.save({ ...doc, cancelRequested: true, detail: "cancel requested" });
    this.sendAgent({ type: "cancel" });
    log("unit:cancel", { unit: doc.id });
    return ok(publicRecord(this.store.doc()!));
  }

  /** Cancel if needed, drop payload and results, keep a tombstone. */
  async release(): Promise<Result<UnitRecord>> {
    const doc = this.store.doc();
    if (!doc) return fail("unknown_unit", "no such unit");
    if (doc.state === "Released") return ok(publicRecord(doc));
    this.store.deleteStreams();
    this.pages.clear();
    await this.move(doc, "Released", "released");
    return ok(publicRecord(this.store.doc()!));
  }

  async fail(detail: string): Promise<void> {
    const doc = this.store.doc();
    if (!doc) return;
    // Already final: the caller's view is stale, so tell the Mesh again to repair its index.
    if (isTerminal(doc.state)) return this.notifyMesh(doc);
    await this.move(doc, "Failed", detail);
  }

  /** The Mesh found `nodeId` silent past its lease; the unit decides what that means (planNodeUnreachable). */
  async nodeUnreachable(nodeId: string, since: string): Promise<UnreachablePlan> {
    const doc = this.store.doc();
    if (!doc) return { action: "ignore" };
    const plan = planNodeUnreachable(doc, nodeId, since);
    if (plan.action === "requeue") await this.annotate({ ...doc, node: null, detail: plan.detail });
    else if (plan.action === "mark") await this.annotate({ ...doc, nodeUnreachableSince: since, detail: plan.detail });
    if (plan.action !== "ignore") log("unit:node-unreachable", { unit: doc.id, node: nodeId, action: plan.action });
    return plan;
  }

  /** The node said hello again: the unit is no longer waiting on an unreachable node. */
  async nodeReachable(nodeId: string): Promise<void> {
    const doc = this.store.doc();
    if (!doc || doc.node !== nodeId || doc.nodeUnreachableSince === null || isTerminal(doc.state)) return;
    await this.annotate({ ...doc, nodeUnreachableSince: null, detail: placedDetail(doc) });
  }

  /** The Mesh declared `nodeId` lost; the unit decides whether that ends it (see planNodeLost). */
  async nodeLost(nodeId: string, silentMs: number, failDetail?: string): Promise<LostPlan> {
    const doc = this.store.doc();
    if (!doc) return { action: "ignore" };
    const lost = planNodeLost(doc, nodeId, silentMs);
    const plan = lost.action === "fail" && failDetail ? { ...lost, detail: failDetail } : lost;
    if (plan.action === "requeue") {
      this.store.save({ ...doc, node: null, detail: plan.detail });
      this.wake();
    } else if (plan.action === "fail") {
      await this.move(doc, "Failed", plan.detail, { nodeUnreachableSince: null });
    }
    if (plan.action !== "ignore") log("unit:node-lost", { unit: doc.id, node: nodeId, action: plan.action });
    return plan;
  }

  override async alarm(): Promise<void> {
    try {
      const retention = this.config;
      const start = this.store.doc();
      if (!start) return;
      for (const action of dueActions(start, retention, Date.now())) {
        const doc = this.store.doc()!;
        switch (action) {
          case "sync":
            await this.notifyMesh(doc);
            break;
          case "expire":
            await this.move(
              doc,
              "Failed",
              `expired: not started within its time to live (${formatDuration(Date.parse(doc.expiresAt!) - Date.parse(doc.createdAt))})`,
            );
            break;
          case "reap":
            this.store.deleteStreams();
            this.pages.clear();
            await this.move(doc, "Released", `released after the ${formatDuration(retention.unitRetentionMs)} retention`);
            break;
          case "purge":
            await this.purge(doc);
            return;
        }
      }
      await this.schedule();
    } catch (error) {
      // Rethrown so the runtime retries the alarm with backoff.
      logError("unit:alarm-failed", error, { unit: this.store.doc()?.id });
      throw error;
    }
  }

  override async webSocketMessage(ws: WebSocket, message: string | ArrayBuffer): Promise<void> {
    const doc = this.store.doc();
    try {
      if (!doc) return this.refuse(ws, { code: "unknown_unit", message: "no such unit" }, true);
      if (typeof message !== "string") {
        if (!isAttached(ws)) return this.refuse(ws, { code: "not_assigned", message: "attach first" }, true);
        return await onAgentResults(this.host, ws, doc, message);
      }
      const decoded = decodeAgentData(message);
      if (!decoded.ok) return this.refuse(ws, decoded.error);
      await onAgentMessage(this.host, ws, doc, decoded.value);
    } catch (error) {
      logError("unit:message-failed", error, { unit: doc?.id });
      this.refuse(ws, { code: "internal", message: "the broker failed to handle that message" });
    }
  }

  override async webSocketClose(ws: WebSocket, code: number): Promise<void> {
    completeClose(ws, code);
    log("unit:agent-disconnected", { unit: this.store.doc()?.id, code });
  }

  override async webSocketError(_ws: WebSocket, error: unknown): Promise<void> {
    logError("unit:socket-error", error, { unit: this.store.doc()?.id });
  }

  /**
   * `retry`: a POST with an Idempotency-Key that already made this unit. If the first upload got
   * through, the retry just answers with the unit; if it died half-way (and is not still
   * streaming here), the retry's body replaces the partial payload.
   */
  private async receivePayload(request: Request, doc: UnitDoc, retry: boolean): Promise<Response> {
    if (doc.payloadComplete || doc.state !== "Pending") {
      if (retry) {
        await request.body?.cancel();
        return Response.json(publicRecord(doc), { status: 200 });
      }
      return errorResponse({ code: "illegal_transition", message: "the payload was already received" }, 409);
    }
    if (this.uploading) {
      await request.body?.cancel();
      return errorResponse({ code: "upload_in_progress", message: "the unit's payload is still being uploaded by an earlier request" }, 409);
    }
    this.uploading = true;
    let result;
    try {
      this.store.deleteStream("payload");
      result = await ingestPayload(this.store, request, this.config.maxPayloadBytes);
    } finally {
      this.uploading = false;
    }
    // Cancel or release may have run while the body was arriving: never resurrect the unit.
    const current = this.store.doc()!;
    if (current.state !== "Pending") {
      if (current.state === "Released") this.store.deleteStreams();
      return errorResponse({ code: "illegal_transition", message: `the unit was ${current.state} while its payload was arriving` }, 409);
    }
    if (!result.ok) {
      this.store.deleteStreams();
      await this.move(current, "Failed", `${result.error.code}: ${result.error.message}`);
      return errorResponse(result.error, result.error.code === "payload_too_large" ? 413 : 400);
    }
    const ready: UnitDoc = { ...current, payloadSize: result.value, payloadComplete: true, detail: "waiting for a node" };
    this.store.save(ready);
    await this.notifyMesh(ready);
    return Response.json(publicRecord(this.store.doc()!), { status: 201 });
  }

  /** The one place unit state changes: checked against the transition table, saved, announced. */
  private async move(doc: UnitDoc, to: UnitState, detail: string, extra: Partial<UnitDoc> = {}): Promise<void> {
    const allowed = transition(doc.state, to);
    if (!allowed.ok) {
      log("unit:illegal-transition", { unit: doc.id, from: doc.state, to });
      return;
    }
    const now = new Date().toISOString();
    const next: UnitDoc = { ...doc, ...extra, state: to, stateNumber: STATE_NUMBER[to], detail };
    if (isTerminal(to) && !next.finishedAt) next.finishedAt = now;
    if (isTerminal(to) && next.resultsAtVerdict === null) next.resultsAtVerdict = next.stdoutSize;
    // An ended unit runs nowhere: its node's reachability no longer describes it.
    if (isTerminal(to)) next.nodeUnreachableSince = null;
    if (to === "Released") next.releasedAt = now;
    this.store.save(next);
    // The last unfinished line becomes an event now that no byte will follow it.
    if (isTerminal(to) && to !== "Released") ingestEvents(this.store, true);
    this.wake();
    if (isTerminal(to)) this.sendAgent({ type: "closed", state: to, exitRecorded: next.exitReported });
    await this.notifyMesh(next);
    await this.schedule();
  }

  /** A change that keeps the state (detail, node, late exit): saved, shown to followers and the Mesh. */
  private async annotate(doc: UnitDoc): Promise<void> {
    this.store.save(doc);
    this.wake();
    await this.notifyMesh(doc);
  }

  /**
   * Tells the Mesh object the unit's state. A failure (the Mesh object restarting, say) is not
   * lost: the unit remembers it is unsynced and its alarm sends the then-current state again.
   */
  private async notifyMesh(doc: UnitDoc): Promise<void> {
    let synced = true;
    try {
      const mesh = this.env.MESH.get(this.env.MESH.idFromName(doc.mesh));
      await mesh.unitChanged({ id: doc.id, state: doc.state, detail: doc.detail, ready: doc.payloadComplete, resultsBytes: doc.stdoutSize });
    } catch (error) {
      synced = false;
      logError("unit:notify-mesh-failed", error, { unit: doc.id });
    }
    const current = this.store.doc();
    // Another move may have run during the RPC: what was sent is in sync only if it is still current.
    if (synced && current && (current.state !== doc.state || current.detail !== doc.detail || current.payloadComplete !== doc.payloadComplete)) return;
    if (current && current.meshSynced !== synced) {
      this.store.save({ ...current, meshSynced: synced });
      await this.schedule();
    }
  }

  /** Sets the one alarm to the earliest thing due (TTL, retention, notification retry). */
  private async schedule(): Promise<void> {
    const doc = this.store.doc();
    const at = doc ? nextAlarm(doc, this.config, Date.now()) : null;
    const current = await this.ctx.storage.getAlarm();
    if (at === null) {
      if (current !== null) await this.ctx.storage.deleteAlarm();
    } else if (current !== at) {
      await this.ctx.storage.setAlarm(at);
    }
  }

  /** The tombstone's retention is over: the Mesh forgets the unit, then so does this object. */
  private async purge(doc: UnitDoc): Promise<void> {
    const mesh = this.env.MESH.get(this.env.MESH.idFromName(doc.mesh));
    try {
      await mesh.unitPurged(doc.id);
    } catch (error) {
      // The runtime gives up on an alarm after a few failures: keep our own retry going instead.
      logError("unit:purge-failed", error, { unit: doc.id });
      await this.ctx.storage.setAlarm(Date.now() + SYNC_RETRY_MS);
      return;
    }
    for (const ws of this.ctx.getWebSockets()) ws.close(4410, "unit forgotten");
    this.store.forget();
    await this.ctx.storage.deleteAlarm();
    log("unit:purged", { unit: doc.id });
  }

  /** Followers (results, events) waiting for the next write or state change. */
  private wake(): void {
    this.waiters.wake();
  }

  private sendAgent(message: BrokerDataMessage): void {
    for (const ws of this.ctx.getWebSockets(AGENT_TAG)) if (isAttached(ws)) this.send(ws, message);
  }

  private send(ws: WebSocket, message: BrokerDataMessage): void {
    try {
      ws.send(encode(message));
    } catch (error) {
      logError("unit:send-failed", error, { unit: this.store.doc()?.id });
    }
  }

  private refuse(ws: WebSocket, error: ErrorBody, close = false): void {
    this.send(ws, { type: "error", error });
    if (close) ws.close(4400, error.code);
  }
}

function errorResponse(error: ErrorBody, status: number): Response {
  return Response.json({ error }, { status });
}
