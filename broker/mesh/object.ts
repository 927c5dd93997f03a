/**
 * The Mesh Durable Object: one per mesh. It holds membership (the nodes and their control sockets)
 * and the index of units, and decides where units run. Unit data never passes through here.
 * Control sockets use the Hibernation API; keepalive pings are answered by the runtime's
 * auto-response without waking the object. A thin shell: each entry point is guarded (guard.ts)
 * and hands off to control.ts (agent sockets), admission.ts (who gets in), placement.ts,
 * lease-check.ts and removal.ts.
 */
import { DurableObject } from "cloudflare:workers";
import { type Result, fail, ok } from "../../shared/errors.js";
import { newUnitId } from "../../shared/ids.js";
import { PING, PONG } from "../../shared/protocol.js";
import { canTransition, isTerminal, type UnitState } from "../../shared/states.js";
import type { HealthReport } from "../../shared/health.js";
import type { MeshStatus, UnitRecord, UnitSummary } from "../../shared/unit.js";
import { type BrokerConfig, brokerConfig } from "../../shared/broker-config.js";
import type { FeedQuery } from "../feed.js";
import { type Guarded, guard } from "../guard.js";
import { log, logError } from "../log.js";
import { refuse, takesMessages } from "../socket.js";
import { accessObject, socketGrant, unitObject } from "../stubs.js";
import { type CreateUnitInput, admit, idempotentRequest, planIdempotency } from "./admission.js";
import { acceptControl, onControlClose, onControlMessage } from "./control.js";
import { MeshEventLog } from "./events.js";
import type { MeshHost } from "./host.js";
import { armLeaseCheck, checkLeases, nodeStatuses } from "./lease-check.js";
import { RateLimiter } from "./limits.js";
import { admitTags } from "./fleet.js";
import { MeshMetrics } from "./metrics.js";
import { checkNode, pauseNode } from "./node-ops.js";
import { dispatch } from "./placement.js";
import { Probes } from "./probes.js";
import { closeOpenedBy, removeNode } from "./removal.js";
import type { SocketAttachment } from "./sockets.js";
import { MeshStore, type UnitIndexRow } from "./store.js";

export interface UnitChange {
  id: string;
  state: UnitState;
  detail: string;
  /** Set once the payload is stored: the unit may now be dispatched. */
  ready?: boolean;
  /** Its payload is streaming in (framed): it may be dispatched to nodes that take that. */
  streaming?: boolean;
  /** Results bytes stored so far (metrics count them once the unit is final). */
  resultsBytes?: number;
}

/** How long a unit ran, from when the index saw it start. */
const ranFor = (startedAt: number | null) => (startedAt === null ? null : Date.now() - startedAt);

export class MeshObject extends DurableObject<Env> {
  private readonly store: MeshStore;
  private readonly config: BrokerConfig;
  private readonly submits: RateLimiter;
  private readonly eventLog: MeshEventLog;
  private readonly host: MeshHost;
  private readonly guarded: Guarded;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.store = new MeshStore(ctx.storage.sql);
    this.config = brokerConfig(env);
    this.eventLog = new MeshEventLog(ctx.storage.sql, this.config.meshEventRetention);
    this.submits = new RateLimiter(this.config.submitsPerMinute);
    // The mesh id is the object's name (idFromName). The runtime leaves ctx.id.name unset in an
    // instance an alarm woke if that alarm was stored without the name (scheduled by an older
    // workerd; on Cloudflare, before 2026-03-15), and the instance stays nameless until evicted
    // (measured on workerd 1.20261117.1). So the name is also stored, once, whenever it is known.
    if (ctx.id.name && this.store.meta("mesh") !== ctx.id.name) this.store.setMeta("mesh", ctx.id.name);
    const mesh = () => ctx.id.name ?? this.store.meta("mesh") ?? "";
    this.host = {
      ctx,
      store: this.store,
      events: this.eventLog,
      config: this.config,
      metrics: new MeshMetrics(ctx.storage.sql),
      probes: new Probes(),
      startedAt: Date.now(),
      joining: new Set(),
      mesh,
      unit: (unitId) => unitObject(env, mesh(), unitId),
      access: () => accessObject(env, mesh()),
    };
    this.guarded = guard("mesh", mesh);
    ctx.setWebSocketAutoResponse(new WebSocketRequestResponsePair(PING, PONG));
  }

  /** An agent's control socket: the one thing that must come through fetch (a WebSocket upgrade). */
  override fetch(request: Request): Promise<Response> {
    return this.guarded("fetch", () => {
      const grant = socketGrant(request);
      if (!grant)
        return Response.json(
          { error: { code: "unknown_route", message: "a Mesh object takes socket upgrades only" } },
          { status: 404 },
        );
      return acceptControl(this.host, grant);
    });
  }

  override webSocketMessage(ws: WebSocket, message: string | ArrayBuffer): Promise<void> {
    return this.guarded(
      "message",
      async () => {
        if (takesMessages(ws)) await onControlMessage(this.host, ws, message);
      },
      () => refuse(ws, { code: "internal", message: "the broker failed to handle that message" }),
    );
  }

  override webSocketClose(ws: WebSocket, code: number): Promise<void> {
    return this.guarded("close", () => onControlClose(this.host, ws, code));
  }

  override webSocketError(ws: WebSocket, error: unknown): Promise<void> {
    return this.guarded("socketError", () =>
      logError("node:socket-error", error, { node: (ws.deserializeAttachment() as SocketAttachment).nodeId }),
    );
  }

  /** Lease check (lease-check.ts). Runs only while some node holds active units. */
  override alarm(): Promise<void> {
    return this.guarded("alarm", async () => {
      try {
        if (await checkLeases(this.host)) await dispatch(this.host);
      } finally {
        // Set even when the check failed: the alarm set here replaces the runtime's retry (guard.ts),
        // so the lease watch never ends on a run of failures.
        await armLeaseCheck(this.host);
      }
    });
  }

  /**
   * `record`: the unit as made, when its payload came with the call (`input.payload`, a small
   * submit): stored with the unit and dispatched before this answers, so the submit is done.
   */
  createUnit(
    input: CreateUnitInput,
  ): Promise<Result<{ unit: UnitIndexRow; created: boolean; record?: UnitRecord | undefined }>> {
    return this.guarded("createUnit", async () => {
      const { store } = this;
      // Keys are the submitter's own: another token reusing one gets a unit of its own.
      const key = input.idempotencyKey ? `${input.submitter}\n${input.idempotencyKey}` : null;
      const request = idempotentRequest(input);
      if (key !== null) {
        const plan = planIdempotency(input.idempotencyKey!, request, store.unitByIdempotencyKey(key));
        if (plan.action === "refuse") return { ok: false, error: plan.error } as const;
        if (plan.action === "forget-and-create") store.releaseIdempotencyKey(plan.id);
        if (plan.action === "reuse") {
          // init is idempotent: this also repairs a row whose Unit object was never initialised.
          const repaired = await this.initUnit(plan.unit.id, input);
          if (!repaired.ok) return repaired;
          // Made with its payload now, or so by a first call that died before the index heard it.
          const { record, ready } = repaired.value;
          if (ready && !plan.unit.ready)
            await this.applyChange({ id: record.id, state: record.state, detail: record.detail, ready });
          return ok({ unit: plan.unit, created: false });
        }
      }
      const mesh = this.host.mesh();
      const admitted = admit(
        input,
        {
          mesh,
          rate: this.submits.take(input.submitter, Date.now()),
          pending: store.counts().pending,
          pendingOfSubmitter: store.pendingOf(input.submitter),
          workTypes: store.nodes.knownWorkTypes(),
          idTaken: input.unitId !== null && store.unit(input.unitId) !== null,
        },
        this.config,
      );
      if (!admitted.ok) return admitted;
      const tagged = admitTags({ ...input, mesh }, store.nodes.known());
      if (!tagged.ok) return tagged;
      let id = input.unitId ?? newUnitId();
      while (store.unit(id)) id = newUnitId();
      const now = Date.now();
      const unit: UnitIndexRow = {
        id,
        worktype: input.worktype,
        targetNode: input.targetNode,
        node: null,
        state: "Pending",
        detail: "receiving payload",
        origin: input.origin,
        tags: input.tags,
        priority: input.priority,
        ready: false,
        lostAfterMs: input.lostAfterMs,
        createdAt: now,
        updatedAt: now,
      };
      store.insertUnit(unit, key === null ? null : { key, request }, input.submitter);
      // The Unit object is made here, not by the caller, so no index row outlives a failed creation.
      const made = await this.initUnit(id, input);
      if (!made.ok) {
        store.deleteUnit(id);
        return made;
      }
      this.eventLog.unit(store.unit(id));
      log("unit:created", { unit: id, worktype: input.worktype, targetNode: input.targetNode });
      const { record, ready } = made.value;
      if (!ready) return ok({ unit, created: true });
      // What the Unit object's notification would say once it stored an uploaded payload (unitChanged).
      await this.applyChange({ id, state: record.state, detail: record.detail, ready });
      return ok({ unit, created: true, record });
    });
  }

  unitChanged(change: UnitChange): Promise<void> {
    return this.guarded("unitChanged", () => this.applyChange(change));
  }

  /** A unit's state as its Unit object tells it (unitChanged), or as a small submit made it (createUnit). */
  private async applyChange(change: UnitChange): Promise<void> {
    const current = this.store.unit(change.id);
    if (!current) return;
    // Notifications from the Unit object may arrive out of order: the index only moves forward.
    const forward =
      current.state === change.state ||
      canTransition(current.state, change.state) ||
      (!isTerminal(current.state) && isTerminal(change.state));
    if (!forward) return;
    this.store.updateUnit(change.id, change, Date.now());
    if (current.state !== change.state || current.detail !== change.detail)
      this.eventLog.unit(this.store.unit(change.id));
    const freed = isTerminal(change.state) && !isTerminal(current.state);
    if (freed)
      this.host.metrics.finished(
        current.worktype,
        change.state,
        ranFor(this.store.startedAt(change.id)),
        change.resultsBytes ?? 0,
      );
    const placeable = (change.ready && !current.ready) || (change.streaming && !current.streaming);
    if (placeable || freed) await dispatch(this.host);
  }

  /** Closes the agent sockets a revoked credential (`by:token:ID`, `by:node:ID`) opened (removal.ts). */
  closeOpenedBy(tag: string): Promise<number> {
    return this.guarded("closeOpenedBy", () => closeOpenedBy(this.host, tag));
  }

  /** An admin removed the node (removal.ts); false if the mesh never knew it. */
  removeNode(nodeId: string): Promise<boolean> {
    return this.guarded("removeNode", () => removeNode(this.host, nodeId));
  }

  /** The Unit object forgot a released unit after its tombstone retention. */
  unitPurged(id: string): Promise<void> {
    return this.guarded("unitPurged", () => {
      const unit = this.store.unit(id);
      this.store.deleteUnit(id);
      if (unit)
        this.eventLog.append({
          kind: "unit",
          id,
          worktype: unit.worktype,
          node: unit.node,
          state: "Forgotten",
          detail: "forgotten after its tombstone retention",
        });
    });
  }

  listUnits(origin: string | null = null): Promise<UnitSummary[]> {
    return this.guarded("listUnits", () =>
      this.store.units(origin).map(({ ready: _ready, createdAt, updatedAt, ...unit }) => ({
        ...unit,
        createdAt: new Date(createdAt).toISOString(),
        updatedAt: new Date(updatedAt).toISOString(),
      })),
    );
  }

  status(): Promise<MeshStatus> {
    return this.guarded("status", () => ({
      mesh: this.host.mesh(),
      nodes: nodeStatuses(this.host),
      units: this.store.counts(),
    }));
  }

  /** An admin paused or resumed a node (node-ops.ts). */
  pauseNode(nodeId: string, paused: boolean): Promise<Result<{ node: string; paused: boolean }>> {
    return this.guarded("pauseNode", () => pauseNode(this.host, nodeId, paused));
  }

  /** A health check through the node (node-ops.ts, shared/health.ts). */
  checkNode(nodeId: string): Promise<Result<HealthReport>> {
    return this.guarded("checkNode", () => checkNode(this.host, nodeId));
  }

  /** The mesh's metrics in Prometheus' text format (metrics.ts). */
  metricsText(): Promise<string> {
    return this.guarded("metricsText", () =>
      this.host.metrics.render({
        queue: this.store.readyQueue().depth(),
        nodes: nodeStatuses(this.host),
        units: this.store.counts(),
        meshEvents: this.eventLog.lastSeq(),
      }),
    );
  }

  /** Mesh-wide events for dashboards (SSE or JSON pages). */
  events(query: FeedQuery): Promise<Response> {
    return this.guarded("events", () => this.eventLog.response(query, this.config.sseKeepaliveMs));
  }

  private async initUnit(id: string, input: CreateUnitInput): Promise<Result<{ record: UnitRecord; ready: boolean }>> {
    const { worktype, targetNode, params, ttlMs, lostAfterMs, signature, origin, tags, priority } = input;
    try {
      const made = await this.host.unit(id).init(
        {
          mesh: this.host.mesh(),
          id,
          worktype,
          targetNode,
          params,
          ttlMs,
          lostAfterMs,
          signature,
          origin,
          tags,
          priority,
        },
        input.payload ?? null,
      );
      return ok(made);
    } catch (error) {
      logError("unit:init-failed", error, { unit: id });
      return fail("internal", "the unit could not be created; retry the submit (with the same Idempotency-Key)");
    }
  }
}
