/**
 * Who may do what, where it takes a real agent or the broker's process: secrets kept from units and
 * logs, nodes that join once with a join token and use their own credential from then on, a dead
 * node's lease, workerd's own HTTP parser and memory windows. The role table, mesh isolation,
 * revocation, the hello deadline and idempotency keys are tested on the Worker alone in
 * test/workers/security.test.ts.
 */
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { connect } from "node:net";
import { readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { WebSocket, request } from "undici";
import { PROTOCOL_VERSION } from "../../shared/protocol.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { MeshStatus, UnitRecord } from "../../shared/unit.js";
import {
  agentArgv,
  type RunningAgent,
  api,
  broker,
  createToken as newToken,
  newMesh,
  sh,
  startAgent,
  tempDir,
  waitFor,
} from "./harness.js";

const mesh = newMesh();
const otherMesh = newMesh();
const SH = `- work-command: {worktype: sh, command: sh, params: "-c", allowruntimeparams: true}\n`;
const tokens: Record<string, string> = {};
const agents: Pick<RunningAgent, "stop">[] = [];
let otherMeshAdmin = "";

async function createToken(inMesh: string, role: string, token?: string): Promise<{ id: string; token: string }> {
  const created = await newToken(inMesh, role, { as: token });
  expect(created.token).toMatch(/^mtk_[A-Za-z0-9_-]{43}$/);
  return created;
}

beforeAll(async () => {
  for (const role of ["admin", "submit", "read", "agent"]) tokens[role] = (await createToken(mesh, role)).token;
  otherMeshAdmin = (await createToken(otherMesh, "admin")).token;
  agents.push(await startAgent({ mesh, nodeId: "guarded", config: SH }));
});

afterAll(async () => {
  await Promise.all(agents.map((a) => a.stop()));
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
  // The role table, mesh isolation, revocation and bad token requests: test/workers/security.test.ts.
  it("the admin token is on no broker process's command line (serve, wrangler, workerd): serve passes it in workerd's environment, wrangler dev in a 0600 file", async () => {
    const { readdir } = await import("node:fs/promises");
    let brokers = 0;
    for (const pid of (await readdir("/proc")).filter((name) => /^\d+$/.test(name))) {
      const cmdline = await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "");
      if (!/wrangler|workerd|serve/.test(cmdline)) continue;
      brokers++;
      expect(`${pid}: ${cmdline.includes(broker().token)}`).toBe(`${pid}: false`);
    }
    expect(brokers).toBeGreaterThan(1);
    if (process.env.MESH_BROKER_RUNTIME === "wrangler")
      expect((await stat(join(broker().stateDir, "state", "secrets.env"))).mode & 0o777).toBe(0o600);
  });
});

/** What must never show in anything a unit or a reader sees: tokens, credentials, the admin token. */
function expectNoSecret(text: string, where: string): void {
  for (const pattern of [/mtk_[A-Za-z0-9_-]{10}/, /mnc_[A-Za-z0-9_-]{10}/, /MESH_[A-Z_]+=/, /"MESH_[A-Z_]+"/]) {
    expect(`${where}: ${pattern.test(text) ? pattern : "clean"}`).toBe(`${where}: clean`);
  }
  expect(`${where}: ${text.includes(broker().token) ? "admin token" : "clean"}`).toBe(`${where}: clean`);
}

describe("agent hardening", () => {
  it("a unit's environment holds none of the agent's secrets: `env`, and ansible-runner's starting line", async () => {
    const join_ = await createToken(mesh, "agent");
    const spy = await startAgent({
      mesh,
      nodeId: "envspy",
      token: join_.token,
      tokenInEnv: true,
      // The agent's own settings, and a variable of an allowed prefix smuggling the token.
      env: { MESH_LOG_LEVEL: "debug", ANSIBLE_SMUGGLED: join_.token },
      config:
        "- work-command: {worktype: env, command: env}\n- work-command: {worktype: ansible-runner, command: ansible-runner, params: worker}\n",
    });
    agents.push(spy);
    // Joined: the agent now also holds its node credential.
    await waitFor(
      async () => (await stat(join(spy.workDir, "credential.json")).catch(() => null)) !== null,
      "the credential",
    );
    const env = await api<UnitRecord>(mesh, "POST", "/units?worktype=env&node=envspy", { body: "" });
    await waitFor(
      async () => (await api<UnitRecord>(mesh, "GET", `/units/${env.body.id}`)).body.state === "Succeeded",
      "the env unit",
    );
    const printed = (await api<string>(mesh, "GET", `/units/${env.body.id}/results`)).body;
    expect(printed).toMatch(/^PATH=/m);
    expect(printed).not.toMatch(/ANSIBLE_SMUGGLED/);
    expectNoSecret(printed, "env");

    const payload = await sh(mesh, "ansible-runner transmit demo -p site.yml");
    expect(payload.code).toBe(0);
    const runner = await api<UnitRecord>(mesh, "POST", "/units?worktype=ansible-runner&node=envspy", {
      body: payload.stdout,
    });
    expect(runner.status).toBe(201);
    await waitFor(
      async () => (await api<UnitRecord>(mesh, "GET", `/units/${runner.body.id}`)).body.state === "Succeeded",
      "the playbook",
      90_000,
    );
    const results = (await api<string>(mesh, "GET", `/units/${runner.body.id}/results`)).body;
    const starting = results
      .split("\n")
      .find((line) => line.includes('"status": "starting"') || line.includes('"status":"starting"'));
    expect(starting).toBeDefined();
    expect(starting).toContain('"PATH"');
    expectNoSecret(results, "ansible-runner results");
    expectNoSecret(spy.logs(), "the agent's log");
  });

  it("a read token finds no token and no secret_* value in anything it can read, for every unit of the mesh", async () => {
    const SECRET = "hunter2-vault-password";
    // Units of every end for the read token to look through (the role table, since moved to
    // test/workers/, left them here before): finished, canceled, released.
    for (let i = 0; i < 6; i++) {
      const unit = await submit();
      if (i % 3 === 1) await api(mesh, "POST", `/units/${unit.id}/cancel`);
      if (i % 3 === 2) await api(mesh, "DELETE", `/units/${unit.id}`);
    }
    const secretive = await api<UnitRecord>(
      mesh,
      "POST",
      `/units?worktype=sh&param.params=${encodeURIComponent("'true'")}&param.secret_vault=${SECRET}&param.secret_token=${tokens.agent}`,
      { body: "" },
    );
    expect(secretive.status).toBe(201);
    expect(secretive.body.params).toMatchObject({ secret_vault: "********", secret_token: "********" });
    await waitFor(
      async () => (await api<UnitRecord>(mesh, "GET", `/units/${secretive.body.id}`)).body.state === "Succeeded",
      "the secretive unit",
    );
    const read = tokens.read!;
    const units = await api<{ id: string }[]>(mesh, "GET", "/units", { token: read });
    expect(units.body.length).toBeGreaterThan(5);
    const seen: string[] = [];
    const look = async (path: string, headers: Record<string, string> = {}) => {
      const { statusCode, body } = await request(`${broker().url}/v1/meshes/${mesh}${path}`, {
        headers: { authorization: `Bearer ${read}`, ...headers },
      });
      const text = Buffer.from(await body.arrayBuffer()).toString("latin1");
      seen.push(path);
      expectNoSecret(text, `${path} (${statusCode})`);
      expect(`${path}: ${text.includes(SECRET)}`).toBe(`${path}: false`);
      return statusCode;
    };
    for (const path of ["/status", "/units", "/events?limit=1000", "/whoami"]) expect(await look(path)).toBe(200);
    for (const { id } of units.body) {
      await look(`/units/${id}`);
      await look(`/units/${id}/events?limit=1000`);
      await look(`/units/${id}/artifacts`);
      expect(await look(`/units/${id}/results`)).toBe(403);
    }
    // The admin sees secret_* params masked too: they are for the node only.
    expect((await api<UnitRecord>(mesh, "GET", `/units/${secretive.body.id}`)).body.params.secret_vault).toBe(
      "********",
    );
    // And the broker wrote none of it to its log.
    const log = await readFile(join(broker().stateDir, "broker.log"), "utf8");
    expectNoSecret(log, "the broker's log");
    expect(log.includes(SECRET)).toBe(false);
    expect(seen.length).toBeGreaterThan(units.body.length * 4);
  });

  it("a unit's spool is private (0700) and runtime params reach the command as literal words, never a shell", async () => {
    const node = await startAgent({
      mesh,
      nodeId: "hardened",
      config:
        "- work-command: {worktype: echo, command: echo, allowruntimeparams: true}\n- work-command: {worktype: fixed, command: echo, params: fixed}\n- work-command: {worktype: nap, command: sleep, params: '3'}\n",
    });
    agents.push(node);
    const marker = join(node.workDir, "pwned");
    const params = encodeURIComponent(`'$(touch ${marker})' '; touch ${marker}' "\`touch ${marker}\`"`);
    const created = await api<UnitRecord>(mesh, "POST", `/units?worktype=echo&node=hardened&param.params=${params}`, {
      body: "",
    });
    expect(created.status).toBe(201);
    await waitFor(
      async () => (await api<UnitRecord>(mesh, "GET", `/units/${created.body.id}`)).body.state === "Succeeded",
      "the echo unit",
    );
    expect((await api(mesh, "GET", `/units/${created.body.id}/results`)).body).toBe(
      `$(touch ${marker}) ; touch ${marker} \`touch ${marker}\`\n`,
    );
    expect(await stat(marker).catch(() => null)).toBeNull();

    const refused = await api<UnitRecord>(
      mesh,
      "POST",
      `/units?worktype=fixed&node=hardened&param.params=${encodeURIComponent("extra")}`,
      { body: "" },
    );
    await waitFor(
      async () => (await api<UnitRecord>(mesh, "GET", `/units/${refused.body.id}`)).body.state === "Failed",
      "the refused unit",
    );
    expect((await api<UnitRecord>(mesh, "GET", `/units/${refused.body.id}`)).body.detail).toBe(
      "work type fixed does not allow runtime params",
    );

    const napping = await api<UnitRecord>(mesh, "POST", "/units?worktype=nap&node=hardened", { body: "" });
    await waitFor(
      async () => (await api<UnitRecord>(mesh, "GET", `/units/${napping.body.id}`)).body.state === "Running",
      "the nap to start",
    );
    expect((await stat(join(node.workDir, "units", napping.body.id))).mode & 0o777).toBe(0o700);
  });
});

describe("node credentials", () => {
  const nodeId = "joiner";
  let workDir: string;
  let first: ReturnType<typeof spawn>;

  const spawnAgent = (dir: string, token: string) => {
    const child = spawn(
      process.execPath,
      [
        ...agentArgv({
          broker: broker().url,
          token,
          mesh,
          nodeId,
          config: join(workDir, "..", "agent.yml"),
          workDir: dir,
        }),
        "--log-level",
        "debug",
      ],
      { stdio: ["ignore", "ignore", "pipe"] },
    );
    let logs = "";
    child.stderr?.on("data", (d) => (logs += d));
    agents.push({ stop: async () => void (child.exitCode === null && child.kill("SIGKILL")) });
    return { child, logs: () => logs };
  };
  const node = async () => (await api<MeshStatus>(mesh, "GET", "/status")).body.nodes.find((n) => n.nodeId === nodeId);

  beforeAll(async () => {
    const dir = await tempDir("mesh-join-");
    workDir = join(dir, "work");
    await writeFile(join(dir, "agent.yml"), SH);
  });

  it("an agent joins once with an agent token and keeps its credential (0600) for later connects", async () => {
    first = spawnAgent(workDir, tokens.agent!).child;
    await waitFor(async () => Boolean((await node())?.connected), "the node to join");
    const path = join(workDir, "credential.json");
    await waitFor(async () => (await stat(path).catch(() => null)) !== null, "the credential file");
    expect((await stat(path)).mode & 0o777).toBe(0o600);
    const saved = JSON.parse(await readFile(path, "utf8")) as { credential: string; nodeId: string };
    expect(saved.nodeId).toBe(nodeId);
    // The credential acts as its node only: not a role.
    expect((await api(mesh, "GET", "/status", { token: saved.credential })).status).toBe(403);
  });

  it("a second agent cannot take over a connected node id, nor one whose credential is in use", async () => {
    const intruder = spawnAgent(join(workDir, "..", "intruder"), tokens.agent!);
    await waitFor(() => intruder.logs().includes("node_taken"), "the intruder to be refused");
    expect((await node())?.connected).toBe(true);
    intruder.child.kill("SIGKILL");

    // The first agent restarts on its work dir: it reconnects with its credential.
    first.kill("SIGKILL");
    const before = (await node())?.connectedAt;
    first = spawnAgent(workDir, "unused-join-token").child;
    await waitFor(async () => {
      const now = await node();
      return Boolean(now?.connected && now.connectedAt !== before);
    }, "the node to come back with its credential");

    // Now the credential has been used: even while the node is briefly away, a join cannot take it.
    first.kill("SIGKILL");
    await waitFor(async () => !(await node())?.connected, "the node to disconnect");
    const late = spawnAgent(join(workDir, "..", "late"), tokens.agent!);
    await waitFor(() => late.logs().includes("node_taken"), "the late joiner to be refused");
    late.child.kill("SIGKILL");
  });

  it("removing a node revokes its credential; the node may join again only with a join token", async () => {
    first = spawnAgent(workDir, "unused-join-token").child;
    await waitFor(async () => Boolean((await node())?.connected), "the node to reconnect");
    const { credential } = JSON.parse(await readFile(join(workDir, "credential.json"), "utf8")) as {
      credential: string;
    };
    const removed = await api<{ revoked: boolean; removed: boolean }>(mesh, "DELETE", `/nodes/${nodeId}`);
    expect(removed.body).toMatchObject({ revoked: true, removed: true });
    await waitFor(
      async () => (await node()) === undefined || !(await node())?.connected,
      "the node to be disconnected",
    );
    // Its credential is refused from now on (401 before anything else is looked at).
    expect((await api(mesh, "GET", `/connect?node=${nodeId}`, { token: credential })).status).toBe(401);
    first.kill("SIGKILL");
    // A fresh join with an agent token works again.
    spawnAgent(join(workDir, "..", "rejoined"), tokens.agent!);
    await waitFor(async () => Boolean((await node())?.connected), "the node to join again");
  });
});

/** A control socket that never says hello: it records what it is sent and how it ends, and pings. */
function spy(node: string, token: string) {
  const ws = new WebSocket(`${broker().url.replace("http", "ws")}/v1/meshes/${mesh}/connect?node=${node}`, {
    headers: { authorization: `Bearer ${token}` },
  });
  const heard: string[] = [];
  let closedWith: number | null = null;
  const pinger = setInterval(() => ws.readyState === WebSocket.OPEN && ws.send("ping"), 500);
  ws.addEventListener("message", (event) => heard.push(String(event.data)));
  ws.addEventListener("close", (event) => {
    closedWith = event.code;
    clearInterval(pinger);
  });
  return { heard, closedWith: () => closedWith, close: () => ws.close() };
}

describe("hello first", () => {
  // The hello deadline and a join for a connected node id: test/workers/security.test.ts.
  it("a dead node whose credential keeps pinging without hello is still unreachable on time", async () => {
    const mortal = await startAgent({ mesh, nodeId: "mortal", config: SH, token: tokens.agent! });
    await waitFor(
      async () => (await stat(join(mortal.workDir, "credential.json")).catch(() => null)) !== null,
      "the credential",
    );
    const { credential } = JSON.parse(await readFile(join(mortal.workDir, "credential.json"), "utf8")) as {
      credential: string;
    };
    const unit = await api<UnitRecord>(
      mesh,
      "POST",
      `/units?worktype=sh&node=mortal&param.params=${encodeURIComponent("'sleep 300'")}`,
      { body: "" },
    );
    await waitFor(
      async () => (await api<UnitRecord>(mesh, "GET", `/units/${unit.body.id}`)).body.state === "Running",
      "the unit to run",
    );
    mortal.process.kill("SIGKILL");
    const died = Date.now();
    // The spy reconnects whenever the hello deadline closes it, pinging all the while.
    let current = spy("mortal", credential);
    const respawn = setInterval(() => {
      if (current.closedWith() !== null) current = spy("mortal", credential);
    }, 200);
    try {
      // The 15 s lease (the default) and the lease check's own period: the spy's pings earn nothing.
      // (Failing "node lost" comes NODE_LOST_AFTER later: lifecycle and outage tests cover that.)
      await waitFor(
        async () => (await api<UnitRecord>(mesh, "GET", `/units/${unit.body.id}`)).body.nodeUnreachableSince !== null,
        "the node to be unreachable",
        50_000,
      );
    } finally {
      clearInterval(respawn);
      current.close();
    }
    expect((await api<UnitRecord>(mesh, "GET", `/units/${unit.body.id}`)).body.detail).toMatch(
      /^node mortal unreachable since /,
    );
    expect(Date.now() - died).toBeLessThan(45_000);
  });
});

/** workerd's resident memory (VmRSS, KiB) for the broker this run shares: its process group's workerd processes. */
async function brokerRssKiB(): Promise<number> {
  const { readdir } = await import("node:fs/promises");
  const pids = (await readdir("/proc")).filter((name) => /^\d+$/.test(name));
  const group = async (pid: string) =>
    (await readFile(`/proc/${pid}/stat`, "utf8").catch(() => "")).replace(/^.*\) /, "").split(" ")[2];
  let leader: string | undefined;
  for (const pid of pids) {
    if ((await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "")).includes(`${broker().stateDir}/state`))
      leader = await group(pid);
  }
  let total = 0;
  for (const pid of pids) {
    if (!(await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "")).includes("workerd")) continue;
    if ((await group(pid)) !== leader) continue;
    total += Number(/VmRSS:\s+(\d+)/.exec(await readFile(`/proc/${pid}/status`, "utf8"))?.[1] ?? 0);
  }
  return total;
}

/** A WebSocket over a raw TCP socket that never reads after the handshake: it only sends text frames. */
async function nonReader(path: string, token: string): Promise<{ send(text: string): void; destroy(): void }> {
  const url = new URL(broker().url);
  const socket = connect(Number(url.port), url.hostname);
  await new Promise((resolve) => socket.once("connect", resolve));
  socket.write(
    `GET /v1/meshes/${mesh}${path} HTTP/1.1\r\nHost: ${url.host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
      `Sec-WebSocket-Key: ${randomBytes(16).toString("base64")}\r\nSec-WebSocket-Version: 13\r\nAuthorization: Bearer ${token}\r\n\r\n`,
  );
  let head = "";
  await new Promise<void>((resolve) => {
    const onData = (data: Buffer) => {
      head += data.toString("latin1");
      if (!head.includes("\r\n\r\n")) return;
      socket.off("data", onData);
      socket.pause();
      resolve();
    };
    socket.on("data", onData);
  });
  expect(head).toMatch(/^HTTP\/1.1 101/);
  return {
    send(text) {
      const payload = Buffer.from(text);
      const mask = randomBytes(4);
      const masked = Buffer.from(payload.map((byte, i) => byte ^ mask[i % 4]!));
      socket.write(Buffer.concat([Buffer.from([0x81, 0x80 | payload.length]), mask, masked]));
    },
    destroy: () => socket.destroy(),
  };
}

describe("windows the broker enforces", () => {
  it("a node that pulls its payload without reading makes workerd hold at most that payload; re-pulls are refused; other meshes answer", async () => {
    const MiB = 1024 * 1024;
    // A node of our own making: the control socket of shared/protocol.ts, nothing more.
    const control = new WebSocket(`${broker().url.replace("http", "ws")}/v1/meshes/${mesh}/connect?node=hoarder`, {
      headers: { authorization: `Bearer ${tokens.agent}` },
    });
    const heard: Record<string, unknown>[] = [];
    control.addEventListener("message", (event) =>
      heard.push(JSON.parse(String(event.data)) as Record<string, unknown>),
    );
    await new Promise((resolve) => control.addEventListener("open", resolve));
    control.send(
      JSON.stringify({
        type: "hello",
        protocol: PROTOCOL_VERSION,
        nodeId: "hoarder",
        workTypes: [{ worktype: "bulk", verifySignature: false, allowRuntimeParams: false }],
        capacity: 1,
        tags: {},
        versions: { agent: "test", node: process.version, ansibleRunner: null, podman: null, podmanUsable: false },
        units: [],
      }),
    );
    await waitFor(() => heard.some((m) => m.type === "welcome"), "the welcome");
    const credential = heard.find((m) => m.type === "welcome")!.credential as string;
    const unit = await api<UnitRecord>(mesh, "POST", "/units?worktype=bulk&node=hoarder", {
      body: randomBytes(16 * MiB),
    });
    expect(unit.status).toBe(201);
    await waitFor(() => heard.some((m) => m.type === "assign"), "the assignment");
    await new Promise((r) => setTimeout(r, 1000));
    const before = await brokerRssKiB();

    const hoarder = await nonReader(`/units/${unit.body.id}/data?node=hoarder`, credential);
    hoarder.send(JSON.stringify({ type: "attach", protocol: PROTOCOL_VERSION, nodeId: "hoarder" }));
    // The whole payload in order, never read: the broker sends it once and must hold it.
    for (let i = 0; i < 16; i++) hoarder.send(JSON.stringify({ type: "payload-pull", offset: i * MiB, length: MiB }));
    await new Promise((r) => setTimeout(r, 3000));
    const started = Date.now();
    expect((await api(otherMesh, "GET", "/status", { token: otherMeshAdmin })).status).toBe(200);
    expect(Date.now() - started).toBeLessThan(2000);
    const grown = ((await brokerRssKiB()) - before) / 1024;
    console.log(`workerd VmRSS grew by ${grown.toFixed(1)} MiB while a node held 16 MiB of payload unread`);
    // Bound: the unit's payload (16 MiB) plus 48 MiB for SQLite's pages, the runtime's buffers and
    // noise (45 MiB measured under a load average of 34).
    expect(grown).toBeLessThan(64);
    // The same bytes again: refused (and the socket closed), where 20 re-pulls grew workerd by 320 MiB before.
    for (let i = 0; i < 20; i++) hoarder.send(JSON.stringify({ type: "payload-pull", offset: 0, length: MiB }));
    await new Promise((r) => setTimeout(r, 2000));
    expect(((await brokerRssKiB()) - before) / 1024).toBeLessThan(64);
    hoarder.destroy();

    // Read this time: a pull of 16 MiB at once (the attack) is refused with a protocol error.
    const reader = new WebSocket(
      `${broker().url.replace("http", "ws")}/v1/meshes/${mesh}/units/${unit.body.id}/data?node=hoarder`,
      {
        headers: { authorization: `Bearer ${credential}` },
      },
    );
    const frames: string[] = [];
    let closed: number | null = null;
    reader.addEventListener("message", (event) => typeof event.data === "string" && frames.push(event.data));
    reader.addEventListener("close", (event) => (closed = event.code));
    await new Promise((resolve) => reader.addEventListener("open", resolve));
    reader.send(JSON.stringify({ type: "attach", protocol: PROTOCOL_VERSION, nodeId: "hoarder" }));
    reader.send(JSON.stringify({ type: "payload-pull", offset: 0, length: 16 * MiB }));
    await waitFor(() => closed !== null, "the refusal");
    expect(
      frames.map(
        (f) =>
          (JSON.parse(f) as { type: string; error?: { code: string } }).error?.code ??
          (JSON.parse(f) as { type: string }).type,
      ),
    ).toEqual(["attached", "window_exceeded"]);
    control.close();
  });
});

describe("quotas and request binding", () => {
  const script = `&param.params=${encodeURIComponent("'true'")}`;
  // The idempotency table and the chunked 411: test/workers/security.test.ts.

  /** A request written by hand, for Content-Length values no HTTP client will send. */
  async function raw(path: string, token: string, contentLength: string): Promise<{ status: number; body: string }> {
    const url = new URL(broker().url);
    const socket = connect(Number(url.port), url.hostname);
    let reply = "";
    socket.on("data", (d: Buffer) => (reply += d.toString("latin1")));
    const ended = new Promise((resolve) => socket.once("close", resolve));
    socket.write(
      `POST /v1/meshes/${mesh}${path} HTTP/1.1\r\nHost: ${url.host}\r\nAuthorization: Bearer ${token}\r\nConnection: close\r\nContent-Length: ${contentLength}\r\n\r\nx`,
    );
    await ended;
    return { status: Number(reply.split(" ")[1]), body: reply.slice(reply.indexOf("\r\n\r\n") + 4) };
  }

  /**
   * Malformed Content-Length, proven against `mesh-broker serve` (the e2e broker). workerd listens on
   * the socket itself, and its HTTP parser (kj-http) refuses a length that is not one plain decimal —
   * a sign, an exponent, two different values, one too large — with its own `400 Bad Request`,
   * `text/plain`, body `invalid content-length parsed`, before any Worker code runs: the Worker cannot
   * answer these in JSON, and a proxy in front of workerd only for that is not worth its cost. The
   * status is the right one; the body is workerd's. Two equal headers are one length (RFC 9110 §8.6)
   * and reach the Worker; no length at all is the Worker's 411 `length_required`.
   */
  const WORKERD_REFUSAL = "invalid content-length parsed";
  const MALFORMED: [string, string, number, string][] = [
    ["Content-Length -1", "-1", 400, WORKERD_REFUSAL],
    ["Content-Length 1e3", "1e3", 400, WORKERD_REFUSAL],
    ["Content-Length +1", "+1", 400, WORKERD_REFUSAL],
    ["two different Content-Length headers", "1\r\nContent-Length: 2", 400, WORKERD_REFUSAL],
    ["one header listing two lengths", "1, 2", 400, WORKERD_REFUSAL],
    ["a length beyond 2^64", "99999999999999999999", 400, WORKERD_REFUSAL],
    ["two equal Content-Length headers: the Worker's answer", "1\r\nContent-Length: 1", 201, '"state":"Pending"'],
  ];
  it.each(MALFORMED)("%s", async (_case, contentLength, status, body) => {
    const reply = await raw(`/units?worktype=sh${script}`, tokens.submit!, contentLength);
    expect(reply.status).toBe(status);
    if (body === WORKERD_REFUSAL) expect(reply.body).toBe(WORKERD_REFUSAL);
    else expect(reply.body).toContain(body);
  });
});

// Revocation ending streams and sockets: test/workers/security.test.ts.
