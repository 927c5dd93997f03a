/**
 * Who may do what, the broker alone: every role against every endpoint, meshes isolated from each
 * other, revoked tokens, the hello deadline, idempotency keys, and revocation ending what a
 * credential opened. The node is spoken by hand; what needs a real agent or the broker's process
 * (agent hardening, node credentials on disk, workerd's own HTTP parser, memory windows) stays in
 * test/e2e/security.test.ts.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { BrokerControlMessage } from "../../shared/protocol.js";
import type { UnitRecord } from "../../shared/unit.js";
import {
  type RawSocket,
  api,
  attachUnit,
  joinNode,
  createToken as newToken,
  newMesh,
  openSocket,
  rawNode,
  waitFor,
  workerFetch,
} from "./harness.js";

const mesh = newMesh();
const otherMesh = newMesh();
const tokens: Record<string, string> = {};
const sockets: RawSocket<BrokerControlMessage>[] = [];
let otherMeshAdmin = "";

type Reply = { error?: { code: string } };

async function createToken(inMesh: string, role: string, token?: string): Promise<{ id: string; token: string }> {
  const created = await newToken(inMesh, role, { as: token });
  expect(created.token).toMatch(/^mtk_[A-Za-z0-9_-]{43}$/);
  return created;
}

beforeAll(async () => {
  for (const role of ["admin", "submit", "read", "agent"]) tokens[role] = (await createToken(mesh, role)).token;
  otherMeshAdmin = (await createToken(otherMesh, "admin")).token;
  // The mesh's node, offering `sh`: it takes what it is assigned and never finishes it.
  sockets.push(await rawNode({ mesh, token: tokens.agent! }, "guarded", ["sh"], 1000));
});

afterAll(() => {
  for (const socket of sockets) socket.close();
});

async function submit(token?: string): Promise<UnitRecord> {
  const reply = await api<UnitRecord>(mesh, "POST", `/units?worktype=sh&param.params=${encodeURIComponent("'true'")}`, {
    body: "",
    ...(token ? { token } : {}),
  });
  expect(reply.status).toBe(201);
  return reply.body;
}

describe("roles", () => {
  // [what, method, path (UNIT = a fresh running unit), body, expected status for admin, submit, read, agent]
  const TABLE: [string, "GET" | "POST" | "DELETE", string, string | undefined, number, number, number, number][] = [
    ["status", "GET", "/status", undefined, 200, 200, 200, 403],
    ["list units", "GET", "/units", undefined, 200, 200, 200, 403],
    ["unit status", "GET", "/units/UNIT", undefined, 200, 200, 200, 403],
    ["results", "GET", "/units/UNIT/results", undefined, 200, 200, 403, 403],
    ["unit events", "GET", "/units/UNIT/events", undefined, 200, 200, 200, 403],
    ["mesh events", "GET", "/events", undefined, 200, 200, 200, 403],
    ["artifacts", "GET", "/units/UNIT/artifacts", undefined, 200, 200, 200, 403],
    ["submit", "POST", `/units?worktype=sh&param.params=${encodeURIComponent("'true'")}`, "", 201, 201, 403, 403],
    ["cancel", "POST", "/units/UNIT/cancel", undefined, 200, 200, 403, 403],
    ["release", "DELETE", "/units/UNIT", undefined, 200, 200, 403, 403],
    ["create token", "POST", "/tokens", JSON.stringify({ role: "read" }), 201, 403, 403, 403],
    ["list tokens", "GET", "/tokens", undefined, 200, 403, 403, 403],
    ["revoke token", "DELETE", "/tokens/zzzzzzzz", undefined, 404, 403, 403, 403],
    ["remove node", "DELETE", "/nodes/no-such-node", undefined, 404, 403, 403, 403],
  ];

  it.each(TABLE)("%s", async (_what, method, path, body, ...expected) => {
    const roles = ["admin", "submit", "read", "agent"] as const;
    for (const [i, role] of roles.entries()) {
      const unit = path.includes("UNIT") ? (await submit()).id : "";
      const reply = await api<Reply>(mesh, method, path.replace("UNIT", unit), {
        token: tokens[role]!,
        ...(body !== undefined ? { body, headers: { "content-type": "application/json" } } : {}),
      });
      expect(`${role}: ${reply.status}`).toBe(`${role}: ${expected[i]}`);
      if (reply.status === 403) expect(reply.body.error?.code).toBe("forbidden");
    }
    for (const [who, token] of [
      ["no token", null],
      ["garbage", "garbage"],
      ["a well-formed unknown token", `mtk_${"A".repeat(43)}`],
    ] as const) {
      const reply = await api<Reply>(mesh, method, path.replace("UNIT", "AAAAAAAA"), {
        token,
        ...(body !== undefined ? { body } : {}),
      });
      expect(`${who}: ${reply.status}`).toBe(`${who}: 401`);
      expect(reply.body.error?.code).toBe("unauthorized");
    }
  });

  it("a token of one mesh sees and touches nothing of another", async () => {
    const unit = await submit();
    for (const [method, path] of [
      ["GET", "/status"],
      ["GET", "/units"],
      ["GET", `/units/${unit.id}`],
      ["GET", `/units/${unit.id}/results`],
      ["GET", `/units/${unit.id}/artifacts`],
      ["POST", `/units/${unit.id}/cancel`],
      ["DELETE", `/units/${unit.id}`],
      ["GET", "/tokens"],
    ] as const) {
      const reply = await api<Reply>(mesh, method, path, { token: otherMeshAdmin });
      expect(`${method} ${path}: ${reply.status}`).toBe(`${method} ${path}: 401`);
    }
    expect((await api<UnitRecord>(mesh, "GET", `/units/${unit.id}`)).body.state).not.toBe("Canceled");
    // And in its own mesh the same token works, and sees none of the first mesh's units.
    const own = await api<unknown[]>(otherMesh, "GET", "/units", { token: otherMeshAdmin });
    expect(own.status).toBe(200);
    expect(own.body).toEqual([]);
  });

  it("a revoked token is refused at once; the token list never shows secrets", async () => {
    const doomed = await createToken(mesh, "read");
    expect((await api(mesh, "GET", "/status", { token: doomed.token })).status).toBe(200);
    const revoked = await api<{ revokedAt: string | null }>(mesh, "DELETE", `/tokens/${doomed.id}`);
    expect(revoked.status).toBe(200);
    expect(revoked.body.revokedAt).not.toBeNull();
    expect((await api(mesh, "GET", "/status", { token: doomed.token })).status).toBe(401);
    const list = await api<Record<string, unknown>[]>(mesh, "GET", "/tokens");
    expect(list.body.find((t) => t.id === doomed.id)).toMatchObject({ role: "read", revokedAt: expect.any(String) });
    expect(JSON.stringify(list.body)).not.toContain("mtk_");
  });

  it("bad token requests get clear 400s", async () => {
    for (const body of [
      "not json",
      JSON.stringify({ role: "root" }),
      JSON.stringify({ role: "read", name: "x".repeat(101) }),
    ]) {
      const reply = await api<Reply>(mesh, "POST", "/tokens", {
        body,
        headers: { "content-type": "application/json" },
      });
      expect(reply.status).toBe(400);
      expect(reply.body.error?.code).toBe("bad_request");
    }
  });
});

/** A control socket that never says hello: it records what it is sent and how it ends, and pings. */
async function spy(node: string, token: string) {
  const ws = await openSocket(mesh, `/connect?node=${node}`, token);
  const heard: string[] = [];
  let closedWith: number | null = null;
  const pinger = setInterval(() => ws.readyState === WebSocket.OPEN && ws.send("ping"), 500);
  ws.addEventListener("message", (event) => {
    heard.push(String(event.data));
  });
  ws.addEventListener("close", (event) => {
    closedWith = event.code;
    clearInterval(pinger);
  });
  return { heard, closedWith: () => closedWith, close: () => ws.close() };
}

describe("hello first", () => {
  it("a socket that never says hello gets no assignment for its node id and is closed by the deadline", async () => {
    const silent = await spy("not-yet-joined", tokens.agent!);
    const opened = Date.now();
    const pinned = await api<UnitRecord>(mesh, "POST", "/units?worktype=sh&node=not-yet-joined&ttl=60", { body: "" });
    expect(pinned.status).toBe(201);
    await waitFor(() => silent.closedWith() !== null, "the hello deadline", 20_000);
    expect(silent.closedWith()).toBe(4408);
    expect(Date.now() - opened).toBeLessThan(15_000);
    expect(silent.heard.filter((m) => m !== "pong")).toEqual([]);
    expect((await api<UnitRecord>(mesh, "GET", `/units/${pinned.body.id}`)).body.node).toBeNull();
    const events = await api<{ events: { nodeId?: string }[] }>(mesh, "GET", "/events?limit=1000");
    expect(events.body.events.filter((e) => e.nodeId === "not-yet-joined")).toEqual([]);
  });

  it("a join for a connected node id is refused at the socket, before any hello", async () => {
    const intruder = await spy("guarded", tokens.agent!);
    await waitFor(() => intruder.closedWith() !== null, "the refusal");
    // The spy pings every 500 ms; on a loaded machine the runtime's "pong" can come before the refusal.
    expect(
      intruder.heard
        .filter((m) => m !== "pong")
        .map((m) => (JSON.parse(m) as { error?: { code: string } }).error?.code),
    ).toEqual(["node_taken"]);
  });
});

describe("quotas and request binding", () => {
  const script = `&param.params=${encodeURIComponent("'true'")}`;
  // [case, path, token role, body, headers, status, code]
  const TABLE: [string, string, string, string, Record<string, string>, number, string | null][] = [
    ["a node the mesh never saw", "/units?worktype=sh&node=nobody-ever", "submit", "", {}, 404, "unknown_node"],
    ["the same, waiting with a ttl", "/units?worktype=sh&node=nobody-ever&ttl=5", "submit", "", {}, 201, null],
    ["a key's first use", `/units?worktype=sh${script}`, "submit", "x", { "idempotency-key": "k-1" }, 201, null],
    ["its retry", `/units?worktype=sh${script}`, "submit", "x", { "idempotency-key": "k-1" }, 200, null],
    [
      "the key with other params",
      `/units?worktype=sh&param.params=${encodeURIComponent("'false'")}`,
      "submit",
      "x",
      { "idempotency-key": "k-1" },
      409,
      "idempotency_mismatch",
    ],
    [
      "the key with another payload length",
      `/units?worktype=sh${script}`,
      "submit",
      "xy",
      { "idempotency-key": "k-1" },
      409,
      "idempotency_mismatch",
    ],
    [
      "the key with another node",
      `/units?worktype=sh&node=guarded${script}`,
      "submit",
      "x",
      { "idempotency-key": "k-1" },
      409,
      "idempotency_mismatch",
    ],
    [
      "the key from another token: a unit of its own",
      `/units?worktype=sh${script}`,
      "admin",
      "x",
      { "idempotency-key": "k-1" },
      201,
      null,
    ],
  ];

  it("a submit without Content-Length (chunked) is the Worker's JSON 411 length_required", async () => {
    const reply = await workerFetch(`/v1/meshes/${mesh}/units?worktype=sh${script}`, {
      method: "POST",
      headers: { authorization: `Bearer ${tokens.submit}` },
      // A stream of unknown length, which workerd sends chunked.
      body: new ReadableStream({
        start(controller) {
          controller.enqueue(new TextEncoder().encode("x"));
          controller.close();
        },
      }),
    });
    expect(reply.status).toBe(411);
    expect(((await reply.json()) as Reply).error?.code).toBe("length_required");
  });

  it.each(TABLE)("%s", async (_case, path, role, body, headers, status, code) => {
    const reply = await api<Reply>(mesh, "POST", path, { body, token: tokens[role]!, headers });
    expect(`${reply.status} ${reply.body.error?.code ?? ""}`).toBe(`${status} ${code ?? ""}`);
  });
});

/** Reads a long-lived answer to its end; resolves with when it ended. */
async function openLongLived(
  path: string,
  token: string,
  headers: Record<string, string> = {},
): Promise<() => Promise<number>> {
  const response = await workerFetch(`/v1/meshes/${mesh}${path}`, {
    headers: { authorization: `Bearer ${token}`, ...headers },
  });
  expect(response.status).toBe(200);
  const ended = (async () => {
    const reader = response.body!.getReader();
    try {
      while (!(await reader.read()).done) {
        // Drained until the broker ends it.
      }
    } catch {
      // Ended by an error is ended too.
    }
    return Date.now();
  })();
  return () => ended;
}

/** Joins `nodeId` by hand (with any join token or its credential); answers the socket and the welcome's credential. */
async function joinRaw(nodeId: string, token: string, worktype: string) {
  const { socket: control, first: welcome } = await joinNode({ mesh, token }, nodeId, [worktype]);
  sockets.push(control);
  if (welcome.type !== "welcome") throw new Error(`expected welcome, got ${JSON.stringify(welcome)}`);
  return { control, credential: welcome.credential ?? null };
}

/** A unit pinned to a raw node, assigned to it and attached on a data socket opened with `token`. */
async function heldUnit(nodeId: string, worktype: string, control: RawSocket<BrokerControlMessage>, token: string) {
  const unit = await api<UnitRecord>(mesh, "POST", `/units?worktype=${worktype}&node=${nodeId}`, { body: "x" });
  expect(unit.status).toBe(201);
  const assign = await control.next();
  expect(assign.type).toBe("assign");
  const { data } = await attachUnit({ mesh, token }, unit.body.id, nodeId);
  return { id: unit.body.id, data };
}

describe("revocation ends what a credential opened", () => {
  const WITHIN_MS = 8_000;

  it("revoking tokens ends their SSE streams, results follows and agent sockets within seconds", async () => {
    const watcher = await createToken(mesh, "submit");
    const joiner = await createToken(mesh, "admin");
    const { control } = await joinRaw("revokee", joiner.token, "rev");
    // The admin token acts for the node on the unit's data socket too.
    const unit = await heldUnit("revokee", "rev", control, joiner.token);
    const streams = {
      meshEvents: await openLongLived("/events?after=latest", watcher.token, { accept: "text/event-stream" }),
      unitEvents: await openLongLived(`/units/${unit.id}/events`, watcher.token, { accept: "text/event-stream" }),
      follow: await openLongLived(`/units/${unit.id}/results?follow=1`, watcher.token),
    };
    await new Promise((r) => setTimeout(r, 500));
    const revokedAt = Date.now();
    for (const doomed of [watcher, joiner])
      expect((await api(mesh, "DELETE", `/tokens/${doomed.id}`)).status).toBe(200);
    const sockets = { control: control.closedWith(), data: unit.data.closedWith() };
    for (const [what, ended] of Object.entries(streams)) {
      expect({ what, afterMs: (await ended()) - revokedAt < WITHIN_MS }).toEqual({ what, afterMs: true });
    }
    for (const [what, closed] of Object.entries(sockets)) {
      expect({ what, code: (await closed).code }).toEqual({ what, code: 4403 });
    }
    expect(Date.now() - revokedAt).toBeLessThan(WITHIN_MS);
    // A stream opened again is refused: the token is gone, not just its connections.
    const again = await workerFetch(`/v1/meshes/${mesh}/events`, {
      headers: { authorization: `Bearer ${watcher.token}` },
    });
    expect(again.status).toBe(401);
    await again.body?.cancel();
    await api(mesh, "POST", `/units/${unit.id}/cancel`);
  });

  it("removing a node closes the control and data sockets its credential opened", async () => {
    const joined = await joinRaw("removee", tokens.admin!, "rem");
    joined.control.close();
    await joined.control.closedWith();
    const { control } = await joinRaw("removee", joined.credential!, "rem");
    const unit = await heldUnit("removee", "rem", control, joined.credential!);
    const removedAt = Date.now();
    expect((await api(mesh, "DELETE", "/nodes/removee")).status).toBe(200);
    expect((await control.closedWith()).code).toBe(4403);
    expect((await unit.data.closedWith()).code).toBe(4403);
    expect(Date.now() - removedAt).toBeLessThan(WITHIN_MS);
  });
});
