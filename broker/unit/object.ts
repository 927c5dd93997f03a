/**
 * The Unit Durable Object: one per unit. It holds the unit's payload, its results log and status,
 * serves result followers, and talks to the one agent running the unit over a data socket
 * (agent-link.ts). State changes are reported to the Mesh object, which keeps the mesh-wide index.
 * A thin shell: each entry point is guarded (guard.ts) and hands off to lifecycle.ts (state
 * changes, alarm), upload.ts (payload), agent-link.ts (data socket) and the readers below.
 */
import { DurableObject } from "cloudflare:workers";
import { type Result, fail, ok } from "../../shared/errors.js";
import { type InlineStart, PING, PONG, decodeAgentData, fitsInline, toBase64 } from "../../shared/protocol.js";
import { isTerminal } from "../../shared/states.js";
import type { UnitRecord } from "../../shared/unit.js";
import { type BrokerConfig, brokerConfig } from "../../shared/broker-config.js";
import type { FeedQuery } from "../feed.js";
import { type Guarded, guard } from "../guard.js";
import { log, logError } from "../log.js";
import { completeClose, refuse, refuseAndClose, refusedSocket, takesMessages } from "../socket.js";
import { socketGrant } from "../stubs.js";
import { acceptAgent, assignmentOf, isAttached, onAgentMessage, onAgentResults } from "./agent-link.js";
import { artifactsResponse } from "./artifacts.js";
import { eventsResponse } from "./event-log.js";
import { UnitLifecycle } from "./lifecycle.js";
import {
  type LostPlan,
  type UnreachablePlan,
  placedDetail,
  planInlineStart,
  planNodeLeaving,
  planNodeLost,
  planNodeRemoved,
  planNodeUnreachable,
} from "./logic.js";
import { resultsStream } from "./results.js";
import { isExpired } from "./schedule.js";
import { type InitUnit, type UnitDoc, UnitStore, newUnitDoc, payloadStreaming, publicRecord } from "./store.js";
import { type PayloadUpload, PayloadReceiver, withPayload } from "./upload.js";

export class UnitObject extends DurableObject<Env> {
  private readonly store: UnitStore;
  private readonly config: BrokerConfig;
  private readonly life: UnitLifecycle;
  private readonly payload: PayloadReceiver;
  private readonly guarded: Guarded;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.store = new UnitStore(ctx.storage.sql);
    this.config = brokerConfig(env);
    this.life = new UnitLifecycle(ctx, this.store, env, this.config);
    this.payload = new PayloadReceiver(this.life, this.config.maxPayloadBytes);
    // The unit's document names it even where the runtime leaves ctx.id.name unset.
    this.guarded = guard("unit", () => ctx.id.name ?? this.store.doc()?.id);
    ctx.setWebSocketAutoResponse(new WebSocketRequestResponsePair(PING, PONG));
    // A framed upload streams into one live instance only: a new instance that finds one still
    // incomplete lost it with the old one (a broker restart). Its unit may have started on the
    // first bytes, so no retry can replace them: it fails, and its node stops the command.
    void ctx.blockConcurrencyWhile(async () => {
      const doc = this.store.doc();
      if (doc && payloadStreaming(doc) && !isTerminal(doc.state))
        await this.life.move(doc, "Failed", "payload_incomplete: the payload's upload was cut by a broker restart");
    });
  }

  /**
   * Makes the unit (idempotent: an existing one is answered as it is). With `payload`, the whole
   * payload of a small submit (routes/units.ts), a new unit stores it at once and is ready as it is
   * made, in the same commit. `ready`: the unit's payload is complete.
   */
  init(input: InitUnit, payload: Uint8Array | null = null): Promise<{ record: UnitRecord; ready: boolean }> {
    return this.guarded("init", async () => {
      const existing = this.store.doc();
      if (existing) return { record: publicRecord(existing), ready: existing.payloadComplete };
      const made = newUnitDoc(input, Date.now());
      const doc = payload ? withPayload(this.store, made, payload) : made;
      this.store.save(doc);
      await this.life.schedule();
      return { record: publicRecord(doc), ready: doc.payloadComplete };
    });
  }

  /** The agent's data socket: the one thing that must come through fetch (a WebSocket upgrade). */
  override fetch(request: Request): Promise<Response> {
    return this.guarded("fetch", () => {
      const grant = socketGrant(request);
      if (!grant)
        return Response.json(
          { error: { code: "unknown_route", message: "a Unit object takes socket upgrades only" } },
          { status: 404 },
        );
      // An agent must hear "unknown unit" to let go of it; a refused handshake only makes it retry.
      if (!this.store.doc())
        return refusedSocket({ code: "unknown_unit", message: "no such unit: it was released and forgotten" });
      return acceptAgent(this.ctx, grant);
    });
  }

  /** The submit's body, streamed over RPC (a ReadableStream argument), into the payload. */
  receivePayload(
    body: ReadableStream<Uint8Array> | null,
    upload: PayloadUpload,
  ): Promise<Result<{ record: UnitRecord; created: boolean }>> {
    return this.guarded("receivePayload", () => this.payload.receive(body, upload));
  }

  /** Raw results from `offset`; `follow`: wait for more until the unit ends. */
  results(offset: number, { follow }: { follow: boolean }): Promise<Result<Response>> {
    return this.guarded("results", () =>
      this.reading("results", (doc) => {
        const stream = resultsStream(this.store, offset, follow, (signal) => this.life.waiters.wait(signal));
        return new Response(stream, {
          headers: { "content-type": "application/octet-stream", "x-unit-state": doc.state },
        });
      }),
    );
  }

  /** The event feed; `redact`: the reader may not see secrets (the Worker decides who may). */
  events(query: FeedQuery, { redact }: { redact: boolean }): Promise<Result<Response>> {
    return this.guarded("events", () =>
      this.reading("events", () =>
        eventsResponse(this.store, this.life.pages, this.life.waiters, query, {
          redact,
          keepaliveMs: this.config.sseKeepaliveMs,
        }),
      ),
    );
  }

  artifacts({ redact }: { redact: boolean }): Promise<Result<Response>> {
    return this.guarded("artifacts", () =>
      this.reading("artifacts", (doc) => artifactsResponse(this.store, doc, redact)),
    );
  }

  /** The Mesh object passes on a revocation: close the data sockets that credential opened. */
  closeOpenedBy(tag: string): Promise<number> {
    return this.guarded("closeOpenedBy", () => {
      const sockets = this.ctx.getWebSockets(tag).filter((ws) => ws.readyState === WebSocket.OPEN);
      for (const ws of sockets) ws.close(4403, "credential revoked");
      return sockets.length;
    });
  }

  status(): Promise<Result<UnitRecord>> {
    return this.guarded("status", () => {
      const doc = this.store.doc();
      return doc ? ok(publicRecord(doc)) : fail("unknown_unit", "no such unit");
    });
  }

  /**
   * Called by the Mesh when it places the unit on a node. Refused once the unit left Pending. With
   * `inline` (the node's work type starts from an inline payload), the answer may carry what the
   * assignment needs to start the unit at once (planInlineStart), else null.
   */
  assign(nodeId: string, { inline = false }: { inline?: boolean } = {}): Promise<Result<InlineStart | null>> {
    return this.guarded("assign", async () => {
      const doc = this.store.doc();
      if (!doc) return fail("unknown_unit", "no such unit");
      if (doc.state !== "Pending") return fail("illegal_transition", `unit is ${doc.state}`);
      if (isExpired(doc, Date.now())) {
        // Its expiry alarm was lost (schedule.ts): expire it once this answer is back with the Mesh
        // (the move tells the Mesh, which is waiting on this call). Not by setting the alarm again:
        // workerd 1.20261117.1 did not run an alarm set after the runtime gave up retrying it.
        this.ctx.waitUntil(this.guarded("expire", () => this.life.runDue()).catch(() => {}));
        return fail("illegal_transition", "unit is past its time to live");
      }
      const assigned: UnitDoc = { ...doc, node: nodeId, detail: `assigned to ${nodeId}` };
      const start = planInlineStart(doc, inline)
        ? { unit: assignmentOf(assigned), payload: toBase64(this.store.readRange("payload", 0, doc.payloadSize)) }
        : null;
      const sent = start && fitsInline(start) ? start : null;
      this.store.save(sent ? { ...assigned, attachedAt: new Date().toISOString() } : assigned);
      return ok(sent);
    });
  }

  cancel(): Promise<Result<UnitRecord>> {
    return this.guarded("cancel", async () => {
      const doc = this.store.doc();
      if (!doc) return fail("unknown_unit", "no such unit");
      if (doc.state === "Released") return fail("unit_released", "the unit was released");
      if (isTerminal(doc.state)) return ok(publicRecord(doc));
      if (doc.state === "Pending") {
        await this.life.move(doc, "Canceled", "canceled before it started");
        return ok(publicRecord(this.store.doc()!));
      }
      this.store.save({ ...doc, cancelRequested: true, detail: "cancel requested" });
      this.life.sendAgent({ type: "cancel" });
      log("unit:cancel", { unit: doc.id });
      return ok(publicRecord(this.store.doc()!));
    });
  }

  /** Cancel if needed, drop payload and results, keep a tombstone. */
  release(): Promise<Result<UnitRecord>> {
    return this.guarded("release", async () => {
      const doc = this.store.doc();
      if (!doc) return fail("unknown_unit", "no such unit");
      if (doc.state !== "Released") await this.life.release(doc, "released");
      return ok(publicRecord(this.store.doc()!));
    });
  }

  fail(detail: string): Promise<void> {
    return this.guarded("fail", async () => {
      const doc = this.store.doc();
      if (!doc) return;
      // Already final: the caller's view is stale, so tell the Mesh again to repair its index.
      if (isTerminal(doc.state)) return this.life.notifyMesh(doc);
      await this.life.move(doc, "Failed", detail);
    });
  }

  /** The Mesh found `nodeId` silent past its lease; the unit decides what that means (planNodeUnreachable). */
  nodeUnreachable(nodeId: string, since: string): Promise<UnreachablePlan> {
    return this.guarded("nodeUnreachable", async () => {
      const doc = this.store.doc();
      if (!doc) return { action: "ignore" };
      const plan = planNodeUnreachable(doc, nodeId, since);
      if (plan.action === "requeue") await this.life.annotate({ ...doc, node: null, detail: plan.detail });
      else if (plan.action === "mark")
        await this.life.annotate({ ...doc, nodeUnreachableSince: since, detail: plan.detail });
      if (plan.action !== "ignore") log("unit:node-unreachable", { unit: doc.id, node: nodeId, action: plan.action });
      return plan;
    });
  }

  /** The node said hello again: the unit is no longer waiting on an unreachable node. */
  nodeReachable(nodeId: string): Promise<void> {
    return this.guarded("nodeReachable", async () => {
      const doc = this.store.doc();
      if (!doc || doc.node !== nodeId || doc.nodeUnreachableSince === null || isTerminal(doc.state)) return;
      await this.life.annotate({ ...doc, nodeUnreachableSince: null, detail: placedDetail(doc) });
    });
  }

  /** The Mesh declared `nodeId` lost after `silentMs` of silence; the unit decides whether that ends it. */
  nodeLost(nodeId: string, silentMs: number): Promise<LostPlan> {
    return this.guarded("nodeLost", () =>
      this.nodeGone(nodeId, "unit:node-lost", (doc) => planNodeLost(doc, nodeId, silentMs)),
    );
  }

  /** An admin removed `nodeId`; the unit decides whether that ends it. */
  nodeRemoved(nodeId: string): Promise<LostPlan> {
    return this.guarded("nodeRemoved", () =>
      this.nodeGone(nodeId, "unit:node-removed", (doc) => planNodeRemoved(doc, nodeId)),
    );
  }

  /** The node's agent is leaving and refused the unit (planNodeLeaving). */
  nodeLeaving(nodeId: string): Promise<LostPlan> {
    return this.guarded("nodeLeaving", () =>
      this.nodeGone(nodeId, "unit:node-leaving", (doc) => planNodeLeaving(doc, nodeId)),
    );
  }

  override alarm(): Promise<void> {
    return this.guarded("alarm", () => this.life.runDue());
  }

  override webSocketMessage(ws: WebSocket, message: string | ArrayBuffer): Promise<void> {
    return this.guarded(
      "message",
      async () => {
        if (!takesMessages(ws)) return;
        const doc = this.store.doc();
        if (!doc) return refuseAndClose(ws, { code: "unknown_unit", message: "no such unit" });
        if (typeof message !== "string") {
          if (!isAttached(ws)) return refuseAndClose(ws, { code: "not_assigned", message: "attach first" });
          return await onAgentResults(this.life, ws, doc, message);
        }
        const decoded = decodeAgentData(message);
        if (!decoded.ok) return refuse(ws, decoded.error);
        await onAgentMessage(this.life, ws, doc, decoded.value);
      },
      () => refuse(ws, { code: "internal", message: "the broker failed to handle that message" }),
    );
  }

  override webSocketClose(ws: WebSocket, code: number): Promise<void> {
    return this.guarded("close", () => {
      completeClose(ws, code);
      log("unit:agent-disconnected", { unit: this.store.doc()?.id, code });
    });
  }

  override webSocketError(_ws: WebSocket, error: unknown): Promise<void> {
    return this.guarded("socketError", () => logError("unit:socket-error", error, { unit: this.store.doc()?.id }));
  }

  /** A reader's answer, or why there is none: no such unit, or its data released. */
  private reading(what: string, answer: (doc: UnitDoc) => Response): Result<Response> {
    const doc = this.store.doc();
    if (!doc) return fail("unknown_unit", "no such unit");
    if (doc.state === "Released") return fail("unit_released", `unit ${doc.id} was released; its ${what} are gone`);
    return ok(answer(doc));
  }

  private async nodeGone(nodeId: string, event: string, decide: (doc: UnitDoc) => LostPlan): Promise<LostPlan> {
    const doc = this.store.doc();
    if (!doc) return { action: "ignore" };
    const plan = decide(doc);
    if (plan.action === "requeue") {
      this.store.save({ ...doc, node: null, detail: plan.detail });
      this.life.wake();
    } else if (plan.action === "fail") {
      await this.life.move(doc, "Failed", plan.detail, { nodeUnreachableSince: null });
    }
    if (plan.action !== "ignore") log(event, { unit: doc.id, node: nodeId, action: plan.action });
    return plan;
  }
}
