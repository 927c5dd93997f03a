/**
 * The Mesh Durable Object: one per mesh. It holds membership (the nodes and their control sockets)
 * and the index of units, and decides where units run. Unit data never passes through here.
 * Control sockets use the Hibernation API; keepalive pings are answered by the runtime's
 * auto-response without waking the object.
 */
import { DurableObject } from "cloudflare:workers";
import { type DiskSpace, isLowDisk } from "../../shared/disk.js";
import { type ErrorBody, type Result, fail, ok } from "../../shared/errors.js";
import { newUnitId } from "../../shared/ids.js";
import { type BrokerControlMessage, type HelloMessage, PING, PONG, PROTOCOL_VERSION, decodeAgentControl, encode } from "../../shared/protocol.js";
import { canTransition, isTerminal, type UnitState } from "../../shared/states.js";
import type { MeshStatus, UnitSummary } from "../../shared/unit.js";
import { type BrokerConfig, brokerConfig } from "../config.js";
import { log, logError } from "../log.js";
import { completeClose, refusedSocket } from "../socket.js";
import { planQueue } from "./dispatch.js";
import { admitTags } from "./fleet.js";
import { MeshMetrics } from "./metrics.js";
import { Probes } from "./probes.js";
import { type HealthReport, healthFailure, judgeHealth } from "../../shared/health.js";
import { MeshEventLog } from "./events.js";
import { type LeaseTimes, leaseVerdict, nextLeaseCheck, planLease, silence, unreachableSince } from "./lease.js";
import { type SocketAttachment, helloedSockets, liveNodes, pingedAt } from "./sockets.js";
import { RateLimiter } from "./limits.js";
import { MeshStore, type UnitIndexRow } from "./store.js";

export interface CreateUnitInput {
  mesh: string;
  worktype: string;
  targetNode: string | null;
  idempotencyKey: string | null;
  /** A submitter that signs its unit chooses the id, because the signature covers it. */
  unitId: string | null;
  /** Who submits (token id), for the per-token submit rate. */
  submitter: string;
  params: Record<string, string>;
  ttlMs: number | null;
  /** The unit's own NODE_LOST_AFTER; null: the broker's. */
  lostAfterMs: number | null;
  signature: string | null;
  /** The submitter's own label for where the unit came from (a control-service bridge's node id). */
  origin: string | null;
  /** The declared payload length: part of what an Idempotency-Key is bound to. */
  payloadLength: number;
  /** Tags the node must have (shared/placement.ts, normalised); [] for any node. */
  tags: string[];
  /** Higher runs first; 0 by default. */
  priority: number;
}

/** What an Idempotency-Key is bound to: a retry must be the same request, or it is refused. */
function idempotentRequest(input: CreateUnitInput): string {
  const params = Object.entries(input.params).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const placement = input.tags.length > 0 || input.priority !== 0 ? [input.tags, input.priority] : [];
  return JSON.stringify([input.worktype, input.targetNode, params, input.payloadLength, ...placement]);
}

/** How long a unit ran, from when the index saw it start. */
const ranFor = (startedAt: number | null) => (startedAt === null ? null : Date.now() - startedAt);

export interface UnitChange {
  id: string;
  state: UnitState;
  detail: string;
  /** Set once the payload is stored: the unit may now be dispatched. */
  ready?: boolean;
  /** Results bytes stored so far (metrics count them once the unit is final). */
  resultsBytes?: number;
}

export class MeshObject extends DurableObject<Env> {
  private readonly store: MeshStore;
  private readonly config: BrokerConfig;
  private readonly submits: RateLimiter;
  private readonly events: MeshEventLog;
  private readonly metrics: MeshMetrics;
  private readonly probes = new Probes();
  /**
   * When this instance started (a restart, a deploy, a wake from eviction). Kept in memory only,
   * on purpose: node silence is counted from no earlier than this, because before it nobody was
   * here to hear the node (see lease.ts).
   */
  private readonly startedAt = Date.now();
  /** Nodes whose join is being issued a credential: they count against MAX_NODES already. */
  private readonly joining = new Set<string>();

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.store = new MeshStore(ctx.storage.sql);
    this.config = brokerConfig(env);
    this.events = new MeshEventLog(ctx.storage.sql, this.config.meshEventRetention);
    this.submits = new RateLimiter(this.config.submitsPerMinute);
    this.metrics = new MeshMetrics(ctx.storage.sql);
    ctx.setWebSocketAutoResponse(new WebSocketRequestResponsePair(PING, PONG));
  }

  /** The event feed, or a control socket upgrade; the Worker has checked auth and the node id. */
  override async fetch(request: Request): Promise<Response> {
    const url = new URL(request.url);
    if (url.pathname.endsWith("/events")) return this.events.response(request, this.config.sseKeepaliveMs);
    const nodeId = url.searchParams.get("node") ?? "";
    this.rememberMesh(url.searchParams.get("mesh") ?? "");
    const joining = url.searchParams.get("join") === "1";
    // A join can never succeed for a node that is connected or whose credential is in use: refuse it
    // here, before the socket is tagged with that node's id.
    if (joining && (liveNodes(this.ctx).has(nodeId) || (await this.access().credentialInUse(nodeId)))) {
      return refusedSocket({ code: "node_taken", message: `node ${nodeId} is connected or has joined already; a second agent cannot take over its id` });
    }
    if (joining && !this.store.hasNode(nodeId) && this.store.nodeCount() >= this.config.maxNodes) {
      return refusedSocket({ code: "limit_exceeded", message: `mesh holds ${this.config.maxNodes} nodes (MAX_NODES); remove one first` });
    }
    const pair = new WebSocketPair();
    const server = pair[1];
    // Tagged with its opener too, so that revoking that credential closes it (closeOpenedBy).
    const opener = url.searchParams.get("opener");
    this.ctx.acceptWebSocket(server, opener ? [nodeId, opener] : [nodeId]);
    server.serializeAttachment({ nodeId, helloed: false, joining } satisfies SocketAttachment);
    // A timer rather than the alarm: it keeps the object from hibernating for those seconds only,
    // and the sockets it watches do not outlive the object anyway (a restart drops them all).
    setTimeout(() => {
      const { helloed } = server.deserializeAttachment() as SocketAttachment;
      if (!helloed && server.readyState === WebSocket.OPEN) server.close(4408, `no hello within ${this.config.helloTimeoutMs} ms`);
    }, this.config.helloTimeoutMs);
    return new Response(null, { status: 101, webSocket: pair[0] });
  }

  override async webSocketMessage(ws: WebSocket, message: string | ArrayBuffer): Promise<void> {
    const attachment = ws.deserializeAttachment() as SocketAttachment;
    try {
      if (typeof message !== "string") return this.refuse(ws, { code: "bad_frame", message: "the control socket carries text frames only" });
      const decoded = decodeAgentControl(message);
      if (!decoded.ok) return this.refuse(ws, decoded.error);
      const msg = decoded.value;
      if (msg.type === "hello") return await this.onHello(ws, attachment, msg);
      if (!attachment.helloed) return this.refuse(ws, { code: "bad_message", message: "send hello first" });
      this.store.touchNode(attachment.nodeId, Date.now());
      if (msg.type === "disk") return await this.onDisk(attachment.nodeId, msg.disk);
      if (msg.type === "leave") return this.onLeave(attachment.nodeId, msg.reason);
      if (msg.type === "probe-result") {
        this.probes.settle(msg.id, { nodeId: attachment.nodeId, agentTime: msg.agentTime, receivedAt: Date.now(), checks: msg.checks });
        return;
      }
      if (this.store.unit(msg.unit)?.node !== attachment.nodeId) {
        return this.refuse(ws, { code: "not_assigned", message: `unit ${msg.unit} is not assigned to node ${attachment.nodeId}` });
      }
      log("unit:rejected", { unit: msg.unit, node: attachment.nodeId, code: msg.error.code });
      // A leaving agent got an assignment sent before its leave arrived: the unit runs elsewhere.
      if (msg.error.code === "node_leaving") return await this.requeueFrom(attachment.nodeId, msg.unit);
      await this.unitStub(msg.unit).fail(`node ${attachment.nodeId} refused the unit: ${msg.error.message}`);
    } catch (error) {
      logError("mesh:message-failed", error, { node: attachment.nodeId });
      this.send(ws, { type: "error", error: { code: "internal", message: "the broker failed to handle that message" } });
    }
  }

  override async webSocketClose(ws: WebSocket, code: number): Promise<void> {
    const { nodeId, helloed } = ws.deserializeAttachment() as SocketAttachment;
    if (helloed) this.store.touchNode(nodeId, Date.now());
    completeClose(ws, code);
    // A socket replaced by the node's newer one is not the node leaving.
    const others = this.ctx.getWebSockets(nodeId).filter((other) => other !== ws && other.readyState === WebSocket.OPEN);
    if (helloed && others.length === 0 && this.store.hasNode(nodeId)) this.events.node(nodeId, "left");
    log("node:disconnected", { node: nodeId, code });
    await this.watchLeases();
  }

  override async webSocketError(ws: WebSocket, error: unknown): Promise<void> {
    const { nodeId } = ws.deserializeAttachment() as SocketAttachment;
    logError("node:socket-error", error, { node: nodeId });
  }

  async createUnit(input: CreateUnitInput): Promise<Result<{ unit: UnitIndexRow; created: boolean }>> {
    this.rememberMesh(input.mesh);
    // Keys are the submitter's own: another token reusing one gets a unit of its own.
    const idempotency = input.idempotencyKey ? { key: `${input.submitter}\n${input.idempotencyKey}`, request: idempotentRequest(input) } : null;
    if (idempotency) {
      const existing = this.store.unitByIdempotencyKey(idempotency.key);
      if (existing && existing.request !== null && existing.request !== idempotency.request) {
        return fail(
          "idempotency_mismatch",
          `Idempotency-Key ${input.idempotencyKey} was used for another request (work type, node, params or payload length differ)`,
        );
      }
      // A first attempt that ended before its payload was stored never ran: the retry starts afresh.
      if (existing && isTerminal(existing.state) && !existing.ready) this.store.releaseIdempotencyKey(existing.id);
      else if (existing) {
        // init is idempotent: this also repairs a row whose Unit object was never initialised.
        const repaired = await this.initUnit(existing.id, input);
        return repaired.ok ? ok({ unit: existing, created: false }) : repaired;
      }
    }
    const rate = this.submits.take(input.submitter, Date.now());
    if (!rate.ok) {
      return fail("rate_limited", `this token may submit ${this.config.submitsPerMinute} units a minute; retry in ${Math.ceil(rate.retryAfterMs / 1000)} s`);
    }
    if (this.store.counts().pending >= this.config.maxPendingUnits) {
      return fail("limit_exceeded", `mesh ${input.mesh} already holds ${this.config.maxPendingUnits} pending units; wait for some to start`);
    }
    // Per submitter too, so that one token cannot fill the mesh's queue for everyone.
    if (this.store.pendingOf(input.submitter) >= this.config.maxPendingPerSubmitter) {
      return fail("limit_exceeded", `this token already has ${this.config.maxPendingPerSubmitter} pending units; wait for some to start`);
    }
    const known = this.store.knownWorkTypes();
    if (input.targetNode !== null) {
      const types = known.get(input.targetNode);
      if (types && !types.has(input.worktype)) {
        return fail("node_lacks_worktype", `node ${input.targetNode} does not offer work type ${input.worktype}`);
      }
      // A node the mesh has never seen: a typo would wait forever. Waiting for a node still to come
      // needs a time to live.
      if (!types && input.ttlMs === null) {
        return fail("unknown_node", `node ${input.targetNode} has never joined mesh ${input.mesh}; check the id, or give a ttl to wait for it`);
      }
    } else if (![...known.values()].some((types) => types.has(input.worktype))) {
      return fail("unknown_worktype", `no node of mesh ${input.mesh} offers work type ${input.worktype}`);
    }
    const tagged = admitTags(input, this.store.knownNodes());
    if (!tagged.ok) return tagged;
    if (input.unitId !== null && this.store.unit(input.unitId)) {
      return fail("unit_exists", `unit ${input.unitId} already exists in mesh ${input.mesh}; a signed unit id is used once`);
    }
    let id = input.unitId ?? newUnitId();
    while (this.store.unit(id)) id = newUnitId();
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
      createdAt: Date.now(),
      updatedAt: Date.now(),
    };
    this.store.insertUnit(unit, idempotency, input.submitter);
    // The Unit object is made here, not by the caller, so no index row outlives a failed creation.
    const made = await this.initUnit(id, input);
    if (!made.ok) {
      this.store.deleteUnit(id);
      return made;
    }
    this.events.unit(this.store.unit(id));
    log("unit:created", { unit: id, worktype: input.worktype, targetNode: input.targetNode });
    return ok({ unit, created: true });
  }

  private async initUnit(id: string, input: CreateUnitInput): Promise<Result<void>> {
    const { mesh, worktype, targetNode, params, ttlMs, lostAfterMs, signature, origin, tags, priority } = input;
    try {
      await this.unitStub(id).init({ mesh, id, worktype, targetNode, params, ttlMs, lostAfterMs, signature, origin, tags, priority });
      return ok(undefined);
    } catch (error) {
      logError("unit:init-failed", error, { unit: id });
      return fail("internal", "the unit could not be created; retry the submit (with the same Idempotency-Key)");
    }
  }

  async unitChanged(change: UnitChange): Promise<void> {
    const current = this.store.unit(change.id);
    if (!current) return;
    // Notifications from the Unit object may arrive out of order: the index only moves forward.
    const forward = current.state === change.state || canTransition(current.state, change.state) || (!isTerminal(current.state) && isTerminal(change.state));
    if (!forward) return;
    this.store.updateUnit(change.id, change, Date.now());
    if (current.state !== change.state || current.detail !== change.detail) this.events.unit(this.store.unit(change.id));
    const freed = isTerminal(change.state) && !isTerminal(current.state);
    if (freed) this.metrics.finished(current.worktype, change.state, ranFor(this.store.startedAt(change.id)), change.resultsBytes ?? 0);
    if ((change.ready && !current.ready) || freed) await this.dispatch();
  }

  /**
   * A credential was revoked (`by:token:ID`) or a node removed (`by:node:ID`): close the agent sockets
   * it opened, control sockets here and data sockets at the units still active, which are the only
   * ones a data socket can act for.
   */
  async closeOpenedBy(tag: string): Promise<number> {
    let closed = 0;
    for (const ws of this.ctx.getWebSockets(tag)) {
      if (ws.readyState !== WebSocket.OPEN) continue;
      ws.close(4403, "credential revoked");
      closed++;
    }
    for (const unit of this.store.units()) {
      if (!isTerminal(unit.state)) closed += await this.unitStub(unit.id).closeOpenedBy(tag);
    }
    if (closed > 0) log("sockets:closed-on-revoke", { tag, closed });
    return closed;
  }

  /** An admin removed the node: its credential is revoked already; disconnect it and end its units. */
  async removeNode(nodeId: string): Promise<boolean> {
    const known = this.store.hasNode(nodeId);
    for (const ws of this.ctx.getWebSockets(nodeId)) if (ws.readyState === WebSocket.OPEN) ws.close(4403, "node removed by an admin");
    if (known) this.events.node(nodeId, "removed");
    for (const unit of this.store.activeOn(nodeId)) {
      // Not started there: it may run elsewhere (or wait for a node of that id to join again).
      const plan = await this.unitStub(unit.id).nodeLost(nodeId, 0, `node ${nodeId} was removed by an admin`);
      if (plan.action === "requeue") this.unassign(unit.id);
    }
    this.store.deleteNode(nodeId);
    if (known) log("node:removed", { node: nodeId });
    await this.dispatch();
    return known;
  }

  /** The Unit object forgot a released unit after its tombstone retention. */
  async unitPurged(id: string): Promise<void> {
    const unit = this.store.unit(id);
    this.store.deleteUnit(id);
    if (unit)
      this.events.append({ kind: "unit", id, worktype: unit.worktype, node: unit.node, state: "Forgotten", detail: "forgotten after its tombstone retention" });
  }

  /**
   * Lease check (lease.ts). Runs only while some node holds active units. Live sockets' ping times
   * are persisted here, so after a broker restart a node is judged by when it was really last heard,
   * and never by the time the broker itself was away.
   */
  override async alarm(): Promise<void> {
    try {
      const now = Date.now();
      const times = this.leaseTimes();
      let requeued = false;
      for (const nodeId of this.store.nodesWithActiveUnits()) {
        const seen = this.observe(nodeId);
        const silentMs = silence(seen, this.startedAt, now);
        const outage = this.store.outage(nodeId);
        const units = this.store.activeOn(nodeId);
        const plan = planLease({ silentMs, markedUnreachable: outage !== null, reportedLost: outage?.reportedLost ?? false, units }, times);
        if (plan.markUnreachable) {
          const since = unreachableSince(seen, this.startedAt, times);
          this.store.markUnreachable(nodeId, since);
          log("node:unreachable", { node: nodeId, silentMs });
          // Half-open: closing it makes the node count as gone for routing at once.
          for (const ws of this.ctx.getWebSockets(nodeId)) ws.close(4008, "lease expired: no ping within the lease");
          this.events.node(nodeId, "unreachable");
          for (const unit of units) {
            const told = await this.unitStub(unit.id).nodeUnreachable(nodeId, new Date(since).toISOString());
            if (told.action === "requeue") {
              this.unassign(unit.id);
              requeued = true;
            }
          }
        }
        if (plan.reportLost) {
          this.store.markLostReported(nodeId);
          log("node:lost", { node: nodeId, silentMs });
          this.events.node(nodeId, "lost");
        }
        for (const id of plan.fail) {
          const lost = await this.unitStub(id).nodeLost(nodeId, silentMs);
          if (lost.action === "requeue") {
            this.unassign(id);
            requeued = true;
          }
        }
      }
      if (requeued) await this.dispatch();
    } catch (error) {
      logError("mesh:alarm-failed", error);
    }
    await this.watchLeases(true);
  }

  /** The agent is leaving for good: no more units for it; once it closes, it is shown as left. */
  private onLeave(nodeId: string, reason: string): void {
    this.store.markLeaving(nodeId, Date.now());
    this.events.node(nodeId, "leaving");
    log("node:leaving", { node: nodeId, reason });
  }

  private async requeueFrom(nodeId: string, unitId: string): Promise<void> {
    const plan = await this.unitStub(unitId).nodeLost(nodeId, 0, `node ${nodeId} is leaving; the unit waits for another node`);
    if (plan.action === "requeue") this.unassign(unitId);
    await this.dispatch();
  }

  /**
   * A health check through the node (shared/health.ts): its verdict is stored, shown in status, and
   * a failed one holds the node (no new units) until a later check passes.
   */
  async checkNode(nodeId: string): Promise<Result<HealthReport>> {
    const sockets = helloedSockets(this.ctx, nodeId);
    if (sockets.length === 0) return fail("node_not_connected", `node ${nodeId} is not connected; a health check runs on the node`);
    const sentAt = Date.now();
    const probe = this.probes.start(nodeId);
    for (const ws of sockets) this.send(ws, { type: "probe", id: probe.id });
    const answer = await probe.answer;
    if (!answer) return fail("probe_timeout", `node ${nodeId} did not answer the health check (is its agent older than the check?)`);
    const report = judgeHealth(answer.checks, { sentAt, receivedAt: answer.receivedAt, agentTime: answer.agentTime });
    const before = this.store.health(nodeId);
    this.store.setHealth(nodeId, JSON.stringify(report));
    this.events.node(nodeId, report.ok ? "healthy" : "unhealthy");
    log("node:checked", { node: nodeId, ok: report.ok, failed: healthFailure(report), skewMs: report.skewMs });
    if (report.ok && before && !before.ok) await this.dispatch();
    return ok(report);
  }

  /** An admin paused or resumed a node: a paused node finishes its units and takes no new ones. */
  async pauseNode(nodeId: string, paused: boolean): Promise<Result<{ node: string; paused: boolean }>> {
    if (!this.store.setPaused(nodeId, paused)) return fail("unknown_node", `no node ${nodeId} in this mesh`);
    this.events.node(nodeId, paused ? "paused" : "resumed");
    log(paused ? "node:paused" : "node:resumed", { node: nodeId });
    if (!paused) await this.dispatch();
    return ok({ node: nodeId, paused });
  }

  /** The mesh's metrics in Prometheus' text format (metrics.ts). */
  async metricsText(mesh: string): Promise<string> {
    const status = await this.status(mesh);
    return this.metrics.render({ queue: this.store.readyQueue().depth(), nodes: status.nodes, units: status.units, meshEvents: this.events.lastSeq() });
  }

  async listUnits(origin: string | null = null): Promise<UnitSummary[]> {
    return this.store.units(origin).map(({ ready: _ready, createdAt, updatedAt, ...unit }) => ({
      ...unit,
      createdAt: new Date(createdAt).toISOString(),
      updatedAt: new Date(updatedAt).toISOString(),
    }));
  }

  async status(mesh: string): Promise<MeshStatus> {
    const now = Date.now();
    const times = this.leaseTimes();
    const nodes = this.store.nodes(liveNodes(this.ctx)).map(({ outageSince, leftAt, ...node }) => {
      const seen = Math.max(node.lastSeen ? Date.parse(node.lastSeen) : 0, pingedAt(this.ctx, node.nodeId) ?? 0);
      // A node that said it was leaving, and went, is neither unreachable nor lost.
      const left = !node.connected && leftAt !== null;
      const verdict = node.connected || left ? "alive" : leaseVerdict(silence(seen || null, this.startedAt, now), times);
      const since = outageSince ?? (verdict === "alive" ? null : unreachableSince(seen || null, this.startedAt, times));
      return {
        ...node,
        lastSeen: seen ? new Date(seen).toISOString() : null,
        unreachable: verdict !== "alive",
        unreachableSince: verdict === "alive" || since === null ? null : new Date(since).toISOString(),
        lost: verdict === "lost",
        left,
      };
    });
    return { mesh, nodes, units: this.store.counts() };
  }

  private async onHello(ws: WebSocket, attachment: SocketAttachment, hello: HelloMessage): Promise<void> {
    if (hello.protocol !== PROTOCOL_VERSION) {
      return this.refuse(
        ws,
        { code: "unsupported_protocol", message: `protocol ${hello.protocol} is not supported; this broker speaks ${PROTOCOL_VERSION}` },
        true,
      );
    }
    if (hello.nodeId !== attachment.nodeId) {
      return this.refuse(ws, { code: "bad_message", message: `hello names node ${hello.nodeId} but the socket was opened for ${attachment.nodeId}` }, true);
    }
    // Read before the node is stored again, which clears its outage.
    const outage = this.store.outage(hello.nodeId);
    let credential: string | undefined;
    if (attachment.joining) {
      // A join may not take over a node that is connected, nor one whose credential is in use.
      if (liveNodes(this.ctx).has(hello.nodeId)) {
        return this.refuse(ws, { code: "node_taken", message: `node ${hello.nodeId} is connected; a second agent cannot take over its id` }, true);
      }
      // MAX_NODES again here, counting joins whose credential is being issued: sockets opened at
      // once all passed the check at the socket, and the await below lets their hellos interleave.
      if (!this.store.hasNode(hello.nodeId) && this.store.nodeCount() + this.joining.size >= this.config.maxNodes) {
        return this.refuse(ws, { code: "limit_exceeded", message: `mesh holds ${this.config.maxNodes} nodes (MAX_NODES); remove one first` }, true);
      }
      this.joining.add(hello.nodeId);
      try {
        const issued = await this.access().issueCredential(hello.nodeId);
        if (!issued.ok) return this.refuse(ws, issued.error, true);
        credential = issued.value;
        this.store.upsertNode(hello.nodeId, hello, Date.now());
      } finally {
        this.joining.delete(hello.nodeId);
      }
    }
    // A reconnecting agent may find its previous socket still half-open: the newest one wins.
    // Only the node's own credential gets this far for an id that has joined.
    for (const other of this.ctx.getWebSockets(hello.nodeId)) {
      if (other !== ws) other.close(4001, "replaced by a newer connection of the same node");
    }
    ws.serializeAttachment({ ...attachment, helloed: true } satisfies SocketAttachment);
    // A join stored the node already, before its hello could be counted twice against MAX_NODES.
    if (credential === undefined) this.store.upsertNode(hello.nodeId, hello, Date.now());
    this.events.node(hello.nodeId, "joined");
    log("node:hello", { node: hello.nodeId, workTypes: hello.workTypes.map((w) => w.worktype), capacity: hello.capacity, joined: attachment.joining });
    this.send(ws, { type: "welcome", nodeId: hello.nodeId, pingIntervalMs: this.config.pingIntervalMs, ...(credential ? { credential } : {}) });
    // Back from an outage: its units are no longer "unreachable" (those it no longer holds fail below).
    if (outage) {
      for (const unit of this.store.activeOn(hello.nodeId)) await this.unitStub(unit.id).nodeReachable(hello.nodeId);
    }
    await this.reconcile(ws, hello);
    await this.dispatch();
  }

  /** A node back above its --min-free may take the units that waited for it. */
  private async onDisk(nodeId: string, disk: DiskSpace): Promise<void> {
    const before = this.store.setNodeDisk(nodeId, disk);
    if (isLowDisk(before) !== isLowDisk(disk))
      log("node:disk", { node: nodeId, freeBytes: disk.freeBytes, minFreeBytes: disk.minFreeBytes, low: isLowDisk(disk) });
    if (isLowDisk(before) && !isLowDisk(disk)) await this.dispatch();
  }

  /** After a reconnect: re-send assignments the agent never saw; fail units it no longer has. */
  private async reconcile(ws: WebSocket, hello: HelloMessage): Promise<void> {
    const held = new Set(hello.units);
    for (const unit of this.store.activeOn(hello.nodeId)) {
      if (held.has(unit.id)) continue;
      if (unit.state === "Pending") {
        this.send(ws, { type: "assign", unitId: unit.id, worktype: unit.worktype });
      } else {
        await this.unitStub(unit.id).fail(`node ${hello.nodeId} reconnected without the unit (agent restarted)`);
      }
    }
  }

  /**
   * Places queued units. Placements are written before any await, so a dispatch that interleaves
   * with another (during the RPCs below) can never place the same unit twice.
   */
  private async dispatch(): Promise<void> {
    const now = Date.now();
    const placements = planQueue(this.store.readyQueue(), this.store.connectedSlots(liveNodes(this.ctx)), now);
    for (const p of placements) this.store.assignUnit(p.unitId, p.nodeId, now);
    for (const p of placements) {
      const unit = this.store.unit(p.unitId);
      if (!unit) continue;
      const accepted = await this.unitStub(p.unitId)
        .assign(p.nodeId)
        .catch((error: unknown) => fail("internal", error instanceof Error ? error.message : String(error)));
      if (!accepted.ok) {
        // Leave the index as the Unit object sees it: unplaced, so a later dispatch may retry.
        this.unassign(p.unitId);
        log("unit:assign-refused", { unit: p.unitId, ...accepted.error });
        continue;
      }
      log("unit:assign", { unit: p.unitId, node: p.nodeId });
      this.metrics.pickedUp(unit.worktype, now - unit.createdAt);
      this.events.unit(this.store.unit(p.unitId), `assigned to ${p.nodeId}`);
      for (const ws of helloedSockets(this.ctx, p.nodeId)) {
        this.send(ws, { type: "assign", unitId: p.unitId, worktype: unit.worktype });
      }
      // The node's stored last_seen may be hours old (pings are not stored as they come): bring it
      // up to date before its lease starts to matter.
      this.observe(p.nodeId);
    }
    if (placements.length > 0) await this.watchLeases();
  }

  /** Keeps the lease alarm running while any node holds active units; `rearm` after it fired. */
  private async watchLeases(rearm = false): Promise<void> {
    if (!rearm && (await this.ctx.storage.getAlarm()) !== null) return;
    const now = Date.now();
    const times = this.leaseTimes();
    const nodes = this.store.nodesWithActiveUnits();
    const silences = nodes.map((node) => silence(this.observe(node) ?? now, this.startedAt, now));
    const lostAfters = new Set([times.lostAfterMs, ...nodes.flatMap((node) => this.store.activeOn(node).map((u) => u.lostAfterMs ?? times.lostAfterMs))]);
    const at = nextLeaseCheck(silences, now, times.leaseMs, [...lostAfters]);
    if (at === null) await this.ctx.storage.deleteAlarm();
    else await this.ctx.storage.setAlarm(at);
  }

  private leaseTimes(): LeaseTimes {
    return { leaseMs: this.config.nodeLeaseMs, lostAfterMs: this.config.nodeLostAfterMs };
  }

  /** The node's last sign of life (message, close, or ping on a live socket), persisted. */
  private observe(nodeId: string): number | null {
    const pinged = pingedAt(this.ctx, nodeId);
    if (pinged !== null) this.store.observeNode(nodeId, pinged);
    return this.store.lastSeen(nodeId);
  }

  private unassign(unitId: string): void {
    this.store.unassignUnit(unitId, Date.now());
    this.events.unit(this.store.unit(unitId));
  }

  private access() {
    return this.env.ACCESS.get(this.env.ACCESS.idFromName(this.store.meta("mesh") ?? ""));
  }

  private unitStub(unitId: string) {
    const mesh = this.store.meta("mesh") ?? "";
    return this.env.UNIT.get(this.env.UNIT.idFromName(`${mesh}/${unitId}`));
  }

  private rememberMesh(mesh: string): void {
    if (mesh && this.store.meta("mesh") !== mesh) this.store.setMeta("mesh", mesh);
  }

  private send(ws: WebSocket, message: BrokerControlMessage): void {
    try {
      ws.send(encode(message));
    } catch (error) {
      logError("mesh:send-failed", error);
    }
  }

  private refuse(ws: WebSocket, error: ErrorBody, close = false): void {
    this.send(ws, { type: "error", error });
    if (close) ws.close(4400, error.code);
  }
}
