/**
 * Who gets in, as pure functions of what the Mesh object knows: a submit (admit: idempotency,
 * quotas, whether any node could run it) and an agent's control socket (checkJoin at the upgrade,
 * checkHello at its hello). The object gathers the facts and carries out the answer.
 */
import { type ErrorBody, type Result, fail, ok } from "../../shared/errors.js";
import { type HelloMessage, PROTOCOL_VERSION } from "../../shared/protocol.js";
import { type UnitState, isTerminal } from "../../shared/states.js";
import type { RateDecision } from "./limits.js";

export interface CreateUnitInput {
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
  payloadLength: number | null;
  /** Tags the node must have (shared/placement.ts, normalised); [] for any node. */
  tags: string[];
  /** Higher runs first; 0 by default. */
  priority: number;
}

/** What an Idempotency-Key is bound to: a retry must be the same request, or it is refused. */
export function idempotentRequest(input: CreateUnitInput): string {
  const params = Object.entries(input.params).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  // Tags and priority only when set, so that keys stored before them still match their retries.
  const placement = input.tags.length > 0 || input.priority !== 0 ? [input.tags, input.priority] : [];
  return JSON.stringify([input.worktype, input.targetNode, params, input.payloadLength, ...placement]);
}

/** What planning needs of the index row a key made (store.ts UnitIndexRow, with its bound request). */
export interface KeyedUnit {
  id: string;
  state: UnitState;
  ready: boolean;
  request: string | null;
}

export type IdempotencyPlan<Row extends KeyedUnit> =
  | { action: "create" }
  /** The key's first attempt ended before its payload was stored, so it never ran: start afresh. */
  | { action: "forget-and-create"; id: string }
  /** A retry of the unit the key made. */
  | { action: "reuse"; unit: Omit<Row, "request"> }
  | { action: "refuse"; error: ErrorBody };

export function planIdempotency<Row extends KeyedUnit>(
  key: string,
  request: string,
  existing: Row | null,
): IdempotencyPlan<Row> {
  if (!existing) return { action: "create" };
  if (existing.request !== null && existing.request !== request) {
    return {
      action: "refuse",
      error: {
        code: "idempotency_mismatch",
        message: `Idempotency-Key ${key} was used for another request (work type, node, params or payload length differ)`,
      },
    };
  }
  const { request: _request, ...unit } = existing;
  if (isTerminal(existing.state) && !existing.ready) return { action: "forget-and-create", id: existing.id };
  return { action: "reuse", unit };
}

export interface SubmitFacts {
  mesh: string;
  rate: RateDecision;
  pending: number;
  pendingOfSubmitter: number;
  /** Each node the mesh has seen, with the work types it offers. */
  workTypes: Map<string, Set<string>>;
  /** The submitter chose an id that is taken. */
  idTaken: boolean;
}

export interface SubmitLimits {
  submitsPerMinute: number;
  maxPendingUnits: number;
  maxPendingPerSubmitter: number;
}

/** Whether a new unit may be created, checked in this order; the first refusal is the answer. */
export function admit(input: CreateUnitInput, facts: SubmitFacts, limits: SubmitLimits): Result<void> {
  const { mesh } = facts;
  if (!facts.rate.ok) {
    return fail(
      "rate_limited",
      `this token may submit ${limits.submitsPerMinute} units a minute; retry in ${Math.ceil(facts.rate.retryAfterMs / 1000)} s`,
    );
  }
  if (facts.pending >= limits.maxPendingUnits) {
    return fail(
      "limit_exceeded",
      `mesh ${mesh} already holds ${limits.maxPendingUnits} pending units; wait for some to start`,
    );
  }
  // Per submitter too, so that one token cannot fill the mesh's queue for everyone.
  if (facts.pendingOfSubmitter >= limits.maxPendingPerSubmitter) {
    return fail(
      "limit_exceeded",
      `this token already has ${limits.maxPendingPerSubmitter} pending units; wait for some to start`,
    );
  }
  if (input.targetNode !== null) {
    const types = facts.workTypes.get(input.targetNode);
    if (types && !types.has(input.worktype))
      return fail("node_lacks_worktype", `node ${input.targetNode} does not offer work type ${input.worktype}`);
    // A node the mesh has never seen: a typo would wait forever. Waiting for a node still to come
    // needs a time to live.
    if (!types && input.ttlMs === null) {
      return fail(
        "unknown_node",
        `node ${input.targetNode} has never joined mesh ${mesh}; check the id, or give a ttl to wait for it`,
      );
    }
  } else if (![...facts.workTypes.values()].some((types) => types.has(input.worktype))) {
    return fail("unknown_worktype", `no node of mesh ${mesh} offers work type ${input.worktype}`);
  }
  if (facts.idTaken)
    return fail("unit_exists", `unit ${input.unitId} already exists in mesh ${mesh}; a signed unit id is used once`);
  return ok(undefined);
}

/** What the Mesh object knows of a node asking in, at its socket or its hello. */
export interface NodeFacts {
  /** Connected now, on a socket that said hello. */
  live: boolean;
  /** Stored: it has joined before. */
  known: boolean;
  /**
   * Nodes stored, plus (at a hello) joins whose credential is being issued. Counted only for a
   * join of a node the mesh does not know (the one case it is read): 0 otherwise.
   */
  nodes: number;
  maxNodes: number;
}

const tooMany = (maxNodes: number): ErrorBody => ({
  code: "limit_exceeded",
  message: `mesh holds ${maxNodes} nodes (MAX_NODES); remove one first`,
});

/**
 * A join's socket, refused before it is tagged with the node's id: a join can never succeed for a
 * node that is connected or whose credential is in use (`credentialInUse`), nor past MAX_NODES.
 */
export function checkJoin(nodeId: string, facts: NodeFacts & { credentialInUse: boolean }): Result<void> {
  if (facts.live || facts.credentialInUse) {
    return fail(
      "node_taken",
      `node ${nodeId} is connected or has joined already; a second agent cannot take over its id`,
    );
  }
  if (!facts.known && facts.nodes >= facts.maxNodes) return { ok: false, error: tooMany(facts.maxNodes) };
  return ok(undefined);
}

/** A hello on a socket opened for `socketNode`; `joining`: opened with a join token. */
export function checkHello(
  hello: HelloMessage,
  socket: { nodeId: string; joining: boolean },
  facts: NodeFacts,
): Result<void> {
  if (hello.protocol !== PROTOCOL_VERSION) {
    return fail(
      "unsupported_protocol",
      `protocol ${hello.protocol} is not supported; this broker speaks ${PROTOCOL_VERSION}`,
    );
  }
  if (hello.nodeId !== socket.nodeId)
    return fail("bad_message", `hello names node ${hello.nodeId} but the socket was opened for ${socket.nodeId}`);
  if (!socket.joining) return ok(undefined);
  // A join may not take over a node that is connected (its credential is checked when issued).
  if (facts.live)
    return fail("node_taken", `node ${hello.nodeId} is connected; a second agent cannot take over its id`);
  // MAX_NODES again here, counting joins whose credential is being issued: sockets opened at once
  // all passed checkJoin, and the credential's issue lets their hellos interleave.
  if (!facts.known && facts.nodes >= facts.maxNodes) return { ok: false, error: tooMany(facts.maxNodes) };
  return ok(undefined);
}
