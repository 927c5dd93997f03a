/** Who the Mesh object lets in: submits (quotas, idempotency, who could run it) and agents' sockets and hellos. */
import { describe, expect, it } from "vitest";
import {
  type CreateUnitInput,
  type SubmitFacts,
  admit,
  checkHello,
  checkJoin,
  idempotentRequest,
  planIdempotency,
} from "../../broker/mesh/admission.js";
import { type HelloMessage, PROTOCOL_VERSION } from "../../shared/protocol.js";

const input = (more: Partial<CreateUnitInput> = {}): CreateUnitInput => ({
  worktype: "sh",
  targetNode: null,
  idempotencyKey: null,
  unitId: null,
  submitter: "token:t1",
  params: {},
  ttlMs: null,
  lostAfterMs: null,
  signature: null,
  origin: null,
  payloadLength: 10,
  tags: [],
  priority: 0,
  ...more,
});

const facts = (more: Partial<SubmitFacts> = {}): SubmitFacts => ({
  mesh: "m",
  rate: { ok: true, retryAfterMs: 0 },
  pending: 0,
  pendingOfSubmitter: 0,
  workTypes: new Map([["n1", new Set(["sh"])]]),
  idTaken: false,
  ...more,
});

const limits = { submitsPerMinute: 60, maxPendingUnits: 10, maxPendingPerSubmitter: 5 };

describe("admit", () => {
  it.each<[string, Partial<CreateUnitInput>, Partial<SubmitFacts>, string | null]>([
    ["a work type some node offers", {}, {}, null],
    ["a node that offers the work type", { targetNode: "n1" }, {}, null],
    ["a node never seen, with a ttl to wait for it", { targetNode: "later", ttlMs: 60_000 }, {}, null],
    ["over the submit rate", {}, { rate: { ok: false, retryAfterMs: 1500 } }, "rate_limited"],
    ["the mesh's pending units full", {}, { pending: 10 }, "limit_exceeded"],
    ["the submitter's pending units full", {}, { pendingOfSubmitter: 5 }, "limit_exceeded"],
    ["a work type no node offers", { worktype: "nope" }, {}, "unknown_worktype"],
    ["a node that lacks the work type", { targetNode: "n1", worktype: "nope" }, {}, "node_lacks_worktype"],
    ["a node never seen, without a ttl", { targetNode: "typo" }, {}, "unknown_node"],
    ["a chosen id that is taken", { unitId: "AbCd1234" }, { idTaken: true }, "unit_exists"],
    ["the rate before the quotas", {}, { rate: { ok: false, retryAfterMs: 1 }, pending: 10 }, "rate_limited"],
  ])("%s", (_name, more, known, code) => {
    const result = admit(input(more), facts(known), limits);
    expect(result.ok ? null : result.error.code).toBe(code);
  });

  it("says when to retry a rate-limited submit, in whole seconds", () => {
    const result = admit(input(), facts({ rate: { ok: false, retryAfterMs: 1500 } }), limits);
    expect(result).toEqual({
      ok: false,
      error: { code: "rate_limited", message: "this token may submit 60 units a minute; retry in 2 s" },
    });
  });
});

describe("planIdempotency", () => {
  const row = (more: { state?: "Pending" | "Failed"; ready?: boolean } = {}) => ({
    id: "AbCd1234",
    worktype: "sh",
    targetNode: null,
    node: null,
    state: "Pending" as "Pending" | "Failed",
    detail: "waiting for a node",
    origin: null,
    ready: true,
    lostAfterMs: null,
    createdAt: 1,
    updatedAt: 1,
    request: idempotentRequest(input()),
    ...more,
  });
  const same = idempotentRequest(input());

  it("creates a unit for a key not seen before", () => {
    expect(planIdempotency("k", same, null)).toEqual({ action: "create" });
  });

  it("reuses the unit the key made, for the same request", () => {
    const { request: _request, ...unit } = row();
    expect(planIdempotency("k", same, row())).toEqual({ action: "reuse", unit });
  });

  it("refuses the key for another request", () => {
    const plan = planIdempotency("k", idempotentRequest(input({ payloadLength: 11 })), row());
    expect(plan).toMatchObject({ action: "refuse", error: { code: "idempotency_mismatch" } });
  });

  it("starts afresh when the first attempt ended before its payload was stored", () => {
    expect(planIdempotency("k", same, row({ state: "Failed", ready: false }))).toEqual({
      action: "forget-and-create",
      id: "AbCd1234",
    });
  });

  it("binds params in any order to the same request", () => {
    expect(idempotentRequest(input({ params: { a: "1", b: "2" } }))).toBe(
      idempotentRequest(input({ params: { b: "2", a: "1" } })),
    );
  });
});

const node = { live: false, known: false, nodes: 0, maxNodes: 2 };

describe("checkJoin", () => {
  it.each<[string, Partial<typeof node> & { credentialInUse?: boolean }, string | null]>([
    ["a new node", {}, null],
    ["a node connected now", { live: true }, "node_taken"],
    ["a node whose credential is in use", { credentialInUse: true }, "node_taken"],
    ["a new node past MAX_NODES", { nodes: 2 }, "limit_exceeded"],
    ["a known node at MAX_NODES (it rejoins, nothing is added)", { nodes: 2, known: true }, null],
  ])("%s", (_name, more, code) => {
    const result = checkJoin("n1", { ...node, credentialInUse: false, ...more });
    expect(result.ok ? null : result.error.code).toBe(code);
  });
});

describe("checkHello", () => {
  const hello = (more: Partial<HelloMessage> = {}): HelloMessage => ({
    type: "hello",
    protocol: PROTOCOL_VERSION,
    nodeId: "n1",
    workTypes: [],
    capacity: 1,
    tags: {},
    versions: { agent: "0.1.0", node: "v24.0.0", ansibleRunner: null, podman: null, podmanUsable: false },
    units: [],
    ...more,
  });
  const joining = { nodeId: "n1", joining: true };

  it.each<[string, Partial<HelloMessage>, { nodeId: string; joining: boolean }, Partial<typeof node>, string | null]>([
    ["a join", {}, joining, {}, null],
    [
      "a reconnect with the node's credential, even while its old socket is live",
      {},
      { nodeId: "n1", joining: false },
      { live: true },
      null,
    ],
    ["another protocol version", { protocol: PROTOCOL_VERSION + 1 }, joining, {}, "unsupported_protocol"],
    ["a hello for another node than the socket's", { nodeId: "n2" }, joining, {}, "bad_message"],
    ["a join for a connected node", {}, joining, { live: true }, "node_taken"],
    ["a join past MAX_NODES, counting joins in flight", {}, joining, { nodes: 2 }, "limit_exceeded"],
    ["a reconnect is never counted against MAX_NODES", {}, { nodeId: "n1", joining: false }, { nodes: 5 }, null],
  ])("%s", (_name, more, socket, known, code) => {
    const result = checkHello(hello(more), socket, { ...node, ...known });
    expect(result.ok ? null : result.error.code).toBe(code);
  });
});
