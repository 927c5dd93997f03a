/**
 * Leases, TTL, retention and idempotent retries, on a broker of this file's own whose clocks are
 * short (lease 2 s, lost after 6 s, retention 4 s), so what takes minutes in production takes seconds.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { connect } from "node:net";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { request } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type LocalBroker, startBroker } from "../../scripts/local-broker.js";
import type { MeshStatus, UnitRecord, UnitSummary } from "../../shared/unit.js";
import { agentArgv, readReply, tempDir, waitFor } from "./harness.js";

const token = "lifecycle-token";
const LEASE_MS = 2_000;
const LOST_AFTER_MS = 6_000;
const RETENTION_MS = 4_000;
const SH = `- work-command: {worktype: sh, command: sh, params: "-c", allowruntimeparams: true}\n`;

let broker: LocalBroker;
let dir: string;
const children: ChildProcess[] = [];

beforeAll(async () => {
  dir = await tempDir("mesh-lifecycle-");
  await writeFile(join(dir, "agent.yml"), SH);
  broker = await startBroker({
    stateDir: join(dir, "state"),
    token,
    logFile: join(dir, "broker.log"),
    vars: {
      PING_INTERVAL_MS: "500",
      NODE_LEASE_MS: String(LEASE_MS),
      NODE_LOST_AFTER_MS: String(LOST_AFTER_MS),
      UNIT_RETENTION_MS: String(RETENTION_MS),
      TOMBSTONE_RETENTION_MS: String(RETENTION_MS),
      MAX_PENDING_UNITS: "8",
      SUBMITS_PER_MINUTE: "6",
    },
  });
}, 90_000);

afterAll(async () => {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  await broker?.stop();
});

async function call<T>(
  mesh: string,
  method: "GET" | "POST" | "DELETE",
  path: string,
  body?: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: T }> {
  const response = await request(`${broker.url}/v1/meshes/${mesh}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, ...headers },
    body: body ?? null,
  });
  return readReply<T>(response);
}

async function agent(mesh: string, nodeId: string): Promise<ChildProcess> {
  const child = spawn(
    process.execPath,
    [
      ...agentArgv({
        broker: broker.url,
        token,
        mesh,
        nodeId,
        config: join(dir, "agent.yml"),
        workDir: join(dir, `work-${mesh}-${nodeId}`),
      }),
      "--capacity",
      "2",
    ],
    { stdio: "ignore" },
  );
  children.push(child);
  await waitFor(
    async () =>
      (await call<MeshStatus>(mesh, "GET", "/status")).body.nodes.some((n) => n.nodeId === nodeId && n.connected),
    `node ${nodeId} to connect`,
  );
  return child;
}

async function submit(mesh: string, script: string, query = ""): Promise<UnitRecord> {
  const reply = await call<UnitRecord>(
    mesh,
    "POST",
    `/units?worktype=sh&param.params=${encodeURIComponent(`'${script}'`)}${query}`,
    "",
  );
  expect(reply.status).toBe(201);
  return reply.body;
}

const unit = async (mesh: string, id: string) => (await call<UnitRecord>(mesh, "GET", `/units/${id}`)).body;
const until = (mesh: string, id: string, states: string[], timeoutMs = 30_000) =>
  waitFor(async () => states.includes((await unit(mesh, id)).state), `unit ${id} to be ${states.join("/")}`, timeoutMs);

describe("leases", () => {
  it("kill -9 of the agent mid-unit: the node is lost and the unit fails 'node lost' with its results so far", async () => {
    const mesh = "lease-kill";
    const node = await agent(mesh, "doomed");
    const pidFile = join(dir, "doomed.pid");
    const running = await submit(mesh, `echo $$ > ${pidFile}; echo before-the-crash; sleep 60`);
    await waitFor(
      async () => (await call(mesh, "GET", `/units/${running.id}/results`)).body === "before-the-crash\n",
      "the first output",
    );
    node.kill("SIGKILL");
    // The unit's process group outlives the agent (as it should); it is this test's to end.
    const pgid = Number(
      execFileSync("ps", ["-o", "pgid=", "-p", (await readFile(pidFile, "utf8")).trim()], { encoding: "utf8" }).trim(),
    );
    process.kill(-pgid, "SIGKILL");
    await until(mesh, running.id, ["Failed"], 20_000);
    const failed = await unit(mesh, running.id);
    expect(failed.detail).toMatch(/^node lost: no word from node doomed for \d+ s$/);
    expect((await call(mesh, "GET", `/units/${running.id}/results`)).body).toBe("before-the-crash\n");
    const status = (await call<MeshStatus>(mesh, "GET", "/status")).body;
    expect(status.nodes.find((n) => n.nodeId === "doomed")).toMatchObject({
      connected: false,
      lost: true,
      activeUnits: 0,
    });
    // One outage, one of each: the node's socket closing and later checks announce nothing again.
    const events = (
      await call<{ events: { kind: string; nodeId?: string; change?: string }[] }>(mesh, "GET", "/events?after=0")
    ).body.events;
    const changes = events.filter((e) => e.kind === "node" && e.nodeId === "doomed").map((e) => e.change);
    expect(changes.filter((c) => c === "unreachable")).toEqual(["unreachable"]);
    expect(changes.filter((c) => c === "lost")).toEqual(["lost"]);
  });

  it("a frozen node (SIGSTOP, socket open but silent) loses an unstarted unit to a healthy node", async () => {
    const mesh = "lease-frozen";
    const frozen = await agent(mesh, "frozen");
    frozen.kill("SIGSTOP");
    try {
      const queued = await submit(mesh, "echo ran-on-$0");
      expect((await unit(mesh, queued.id)).node).toBe("frozen");
      await agent(mesh, "healthy");
      await until(mesh, queued.id, ["Succeeded"], 20_000);
      expect((await unit(mesh, queued.id)).node).toBe("healthy");
      const nodes = (await call<MeshStatus>(mesh, "GET", "/status")).body.nodes;
      expect(nodes.find((n) => n.nodeId === "frozen")).toMatchObject({ connected: false, unreachable: true });
    } finally {
      frozen.kill("SIGKILL");
    }
  });

  it("a node that comes back while unreachable (before lost-after) keeps its running unit", async () => {
    const mesh = "lease-return";
    const node = await agent(mesh, "blinker");
    const running = await submit(mesh, "sleep 5; echo survived");
    await until(mesh, running.id, ["Running"]);
    // Silent for longer than the lease but shorter than lost-after, then back.
    node.kill("SIGSTOP");
    await waitFor(
      async () =>
        (await call<MeshStatus>(mesh, "GET", "/status")).body.nodes.some(
          (n) => n.nodeId === "blinker" && n.unreachable && !n.lost,
        ),
      "the node to be unreachable",
      20_000,
    );
    const marked = await unit(mesh, running.id);
    expect(marked.state).toBe("Running");
    expect(marked.detail).toMatch(/^node blinker unreachable since \S+; the unit may still be running there$/);
    expect(marked.nodeUnreachableSince).not.toBeNull();
    node.kill("SIGCONT");
    await waitFor(
      async () => (await unit(mesh, running.id)).nodeUnreachableSince === null,
      "the unit's node to be reachable again",
      20_000,
    );
    await until(mesh, running.id, ["Succeeded", "Failed"], 30_000);
    expect(await unit(mesh, running.id)).toMatchObject({ state: "Succeeded", node: "blinker" });
    expect((await call(mesh, "GET", `/units/${running.id}/results`)).body).toBe("survived\n");
  });
});

describe("ttl and retention", () => {
  it("a Pending unit not started within its TTL fails 'expired', and a bad TTL is a 400", async () => {
    const mesh = "ttl";
    await agent(mesh, "present");
    const waiting = await submit(mesh, "echo never", "&node=absent&ttl=2s");
    expect(waiting.expiresAt).not.toBeNull();
    await until(mesh, waiting.id, ["Failed"], 20_000);
    expect((await unit(mesh, waiting.id)).detail).toBe("expired: not started within its time to live (2s)");
    const bad = await call<{ error: { code: string; message: string } }>(
      mesh,
      "POST",
      "/units?worktype=sh&ttl=soon",
      "",
    );
    expect(bad.status).toBe(400);
    expect(bad.body.error.code).toBe("bad_request");
  });

  it("finished units are released after the retention, then forgotten after the tombstone retention", async () => {
    const mesh = "retention";
    await agent(mesh, "keeper");
    const done = await submit(mesh, "echo kept-for-a-while");
    await until(mesh, done.id, ["Succeeded"]);
    expect((await call(mesh, "GET", `/units/${done.id}/results`)).body).toBe("kept-for-a-while\n");
    await until(mesh, done.id, ["Released"], 30_000);
    expect((await unit(mesh, done.id)).detail).toBe("released after the 4s retention");
    expect((await call(mesh, "GET", `/units/${done.id}/results`)).status).toBe(410);
    await waitFor(
      async () => (await call(mesh, "GET", `/units/${done.id}`)).status === 404,
      "the tombstone to be purged",
      30_000,
    );
    expect((await call<UnitSummary[]>(mesh, "GET", "/units")).body.map((u) => u.id)).not.toContain(done.id);
  });
});

describe("limits", () => {
  const submitAs = async (mesh: string, as: string) =>
    readReply<{ error?: { code: string; message: string } }>(
      await request(`${broker.url}/v1/meshes/${mesh}/units?worktype=sh&node=absent&ttl=1h`, {
        method: "POST",
        headers: { authorization: `Bearer ${as}` },
        body: "",
      }),
    );
  const newToken = async (mesh: string) =>
    (
      await call<{ token: string }>(mesh, "POST", "/tokens", JSON.stringify({ role: "submit" }), {
        "content-type": "application/json",
      })
    ).body.token;

  it("each token may submit SUBMITS_PER_MINUTE units a minute; the next gets 429 rate_limited, others are unaffected", async () => {
    const mesh = "rate";
    const [eager, patient] = [await newToken(mesh), await newToken(mesh)];
    for (let i = 0; i < 6; i++) expect((await submitAs(mesh, eager)).status).toBe(201);
    const refused = await submitAs(mesh, eager);
    expect(refused.status).toBe(429);
    expect(refused.body.error?.code).toBe("rate_limited");
    expect(refused.body.error?.message).toMatch(/retry in \d+ s$/);
    expect((await submitAs(mesh, patient)).status).toBe(201);
  });

  it("a mesh holds at most MAX_PENDING_UNITS pending units; the next submit gets 429 limit_exceeded", async () => {
    const mesh = "pending-cap";
    const [a, b] = [await newToken(mesh), await newToken(mesh)];
    for (let i = 0; i < 4; i++) {
      expect((await submitAs(mesh, a)).status).toBe(201);
      expect((await submitAs(mesh, b)).status).toBe(201);
    }
    const refused = await submitAs(mesh, a);
    expect(refused.status).toBe(429);
    expect(refused.body.error?.code).toBe("limit_exceeded");
    // Space frees up as pending units end.
    const [first] = (await call<UnitSummary[]>(mesh, "GET", "/units")).body;
    await call(mesh, "POST", `/units/${first!.id}/cancel`);
    expect((await submitAs(mesh, b)).status).toBe(201);
  });
});

/** Starts a submit that promises `length` bytes, sends 10, and dies. */
function cutSubmit(mesh: string, key: string, length: number): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const url = new URL(broker.url);
    const socket = connect(Number(url.port), url.hostname, () => {
      socket.write(
        `POST /v1/meshes/${mesh}/units?worktype=sh&param.params=${encodeURIComponent("'wc -c'")} HTTP/1.1\r\nHost: ${url.host}\r\n` +
          `Authorization: Bearer ${token}\r\nIdempotency-Key: ${key}\r\nContent-Length: ${length}\r\n\r\n0123456789`,
      );
      setTimeout(() => {
        socket.destroy();
        resolve();
      }, 500);
    });
    socket.once("error", reject);
  });
}

describe("idempotent submit", () => {
  // Over INLINE_PAYLOAD_BYTES (32 KiB), so the body streams into the unit as it is made.
  const LARGE = 40_000;

  it("a retry after an upload that died half-way runs the job once, from the retry's payload", async () => {
    const mesh = "idem";
    await agent(mesh, "worker");
    const key = `retry-${Date.now()}`;
    // The first attempt promises LARGE bytes, sends 10, and the connection dies.
    await cutSubmit(mesh, key, LARGE);
    let first: UnitSummary | undefined;
    await waitFor(async () => {
      first = (await call<UnitSummary[]>(mesh, "GET", "/units")).body[0];
      return first?.state === "Failed";
    }, "the cut upload to fail");
    // The stream-error check fired (not the declared-length one: that is test/unit/payload.test.ts).
    expect(first!.detail).toMatch(/^payload_incomplete: payload stream broke after 10 bytes \(.+\)$/);

    const retry = await call<UnitRecord>(
      mesh,
      "POST",
      `/units?worktype=sh&param.params=${encodeURIComponent("'wc -c'")}`,
      "x".repeat(LARGE),
      {
        "idempotency-key": key,
      },
    );
    expect(retry.status).toBe(201);
    expect(retry.body.id).not.toBe(first!.id);
    await until(mesh, retry.body.id, ["Succeeded"]);
    expect(String((await call(mesh, "GET", `/units/${retry.body.id}/results`)).body).trim()).toBe(String(LARGE));

    // A retry is the same request (the key is bound to its work type, node, params and length): it
    // answers the unit, the body unread.
    const again = await call<UnitRecord>(
      mesh,
      "POST",
      `/units?worktype=sh&param.params=${encodeURIComponent("'wc -c'")}`,
      "y".repeat(LARGE),
      {
        "idempotency-key": key,
      },
    );
    expect(again.status).toBe(200);
    expect(again.body.id).toBe(retry.body.id);
    expect((await call<UnitSummary[]>(mesh, "GET", "/units")).body).toHaveLength(2);
  });

  it("a small upload that dies makes no unit (it is read whole before); the retry makes it, once", async () => {
    const mesh = "idem-small";
    await agent(mesh, "worker");
    const key = `small-${Date.now()}`;
    await cutSubmit(mesh, key, 1000);
    expect((await call<UnitSummary[]>(mesh, "GET", "/units")).body).toEqual([]);
    const submit = (body: string) =>
      call<UnitRecord>(mesh, "POST", `/units?worktype=sh&param.params=${encodeURIComponent("'wc -c'")}`, body, {
        "idempotency-key": key,
      });
    const retry = await submit("x".repeat(1000));
    expect(retry.status).toBe(201);
    expect(retry.body.payloadSize).toBe(1000);
    await until(mesh, retry.body.id, ["Succeeded"]);
    expect(String((await call(mesh, "GET", `/units/${retry.body.id}/results`)).body).trim()).toBe("1000");
    const again = await submit("y".repeat(1000));
    expect(again.status).toBe(200);
    expect(again.body.id).toBe(retry.body.id);
    expect((await call<UnitSummary[]>(mesh, "GET", "/units")).body).toHaveLength(1);
  });
});
