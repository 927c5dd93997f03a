/**
 * `mesh-broker serve` as it runs in production: HTTPS/WSS from a certificate made here with openssl
 * (self-signed, trusted by the agent and meshctl with --ca-file), the real ansible-runner pipeline
 * over it, a restart mid-unit, the admin token on no command line, and no port but the broker's.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { readFile, readdir, readlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { Agent, request } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type LocalBroker, ROOT, startBroker } from "../../scripts/local-broker.js";
import type { MeshStatus, UnitRecord } from "../../shared/unit.js";
import { AGENT_BIN, MESHCTL_BIN, type CliResult, tempDir, waitFor } from "./harness.js";

const mesh = "tls";
const adminToken = `serve-admin-${Math.random().toString(36).slice(2)}`;
let dir: string;
let cert: string;
let broker: LocalBroker;
let dispatcher: Agent;
let agent: ChildProcess;
let agentLog = "";
const start = (port?: number) =>
  startBroker({
    runtime: "serve",
    stateDir: join(dir, "state"),
    token: adminToken,
    logFile: join(dir, "broker.log"),
    tls: { cert, key: join(dir, "key.pem") },
    port,
  });

async function call<T>(method: "GET" | "POST", path: string, body?: string): Promise<{ status: number; body: T }> {
  const response = await request(`${broker.url}/v1/meshes/${mesh}${path}`, {
    method,
    dispatcher,
    headers: { authorization: `Bearer ${adminToken}`, "content-type": "application/json" },
    body: body ?? null,
  });
  return { status: response.statusCode, body: (await response.body.json()) as T };
}

function sh(script: string, env: Record<string, string> = {}): Promise<CliResult> {
  return new Promise((resolve) => {
    const child = spawn("bash", ["-o", "pipefail", "-c", script], {
      cwd: ROOT,
      env: {
        ...process.env,
        MESH_BROKER: broker.url,
        MESH_TOKEN: adminToken,
        MESH_ID: mesh,
        MESHCTL: `${process.execPath} ${MESHCTL_BIN}`,
        ...env,
      },
    });
    const out: Buffer[] = [];
    let err = "";
    child.stdout.on("data", (d: Buffer) => out.push(d));
    child.stderr.on("data", (d) => (err += d));
    child.once("exit", (code) => resolve({ code: code ?? 1, stdout: Buffer.concat(out), stderr: err }));
  });
}

/** Children of `pid` (from /proc/PID/task/*\/children). */
async function children(pid: number): Promise<number[]> {
  const tasks = await readdir(`/proc/${pid}/task`).catch(() => []);
  const lists = await Promise.all(
    tasks.map((t) => readFile(`/proc/${pid}/task/${t}/children`, "utf8").catch(() => "")),
  );
  return lists.flatMap((l) => l.split(/\s+/).filter(Boolean).map(Number));
}

/** TCP ports `pid` listens on: its socket inodes matched against /proc/net/tcp{,6} rows in state LISTEN. */
async function listeningPorts(pid: number): Promise<number[]> {
  const fds = await readdir(`/proc/${pid}/fd`);
  const inodes = new Set<string>();
  for (const fd of fds) {
    const link = await readlink(`/proc/${pid}/fd/${fd}`).catch(() => "");
    const match = /^socket:\[(\d+)\]$/.exec(link);
    if (match) inodes.add(match[1]!);
  }
  const ports: number[] = [];
  for (const table of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    for (const row of (await readFile(table, "utf8")).split("\n").slice(1)) {
      const cols = row.trim().split(/\s+/);
      if (cols[3] === "0A" && inodes.has(cols[9]!)) ports.push(Number.parseInt(cols[1]!.split(":")[1]!, 16));
    }
  }
  return ports;
}

beforeAll(async () => {
  dir = await tempDir("mesh-serve-");
  cert = join(dir, "cert.pem");
  execFileSync(
    "openssl",
    [
      ...[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=mesh-test",
      ],
      ...["-keyout", join(dir, "key.pem"), "-out", cert, "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
    ],
    { stdio: "ignore" },
  );
  broker = await start();
  dispatcher = new Agent({ connect: { ca: await readFile(cert, "utf8") } });
  const agentToken = await call<{ token: string }>(
    "POST",
    "/tokens",
    JSON.stringify({ role: "agent", name: "tls agent" }),
  );
  expect(agentToken.status).toBe(201);
  await writeFile(
    join(dir, "agent.yml"),
    `- work-command: {worktype: ansible-runner, command: ansible-runner, params: worker}
- work-command: {worktype: sh, command: sh, params: "-c", allowruntimeparams: true}
`,
  );
  // The agent's token in its environment, so that no secret at all is on a command line below.
  agent = spawn(
    process.execPath,
    [
      AGENT_BIN,
      "--mesh",
      mesh,
      "--node-id",
      "tls-node",
      "--config",
      join(dir, "agent.yml"),
      "--work-dir",
      join(dir, "work"),
      "--ca-file",
      cert,
    ],
    {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, MESH_BROKER: broker.url, MESH_TOKEN: agentToken.body.token },
    },
  );
  agent.stdout?.on("data", (d) => (agentLog += d));
  agent.stderr?.on("data", (d) => (agentLog += d));
  await waitFor(async () => {
    if (agent.exitCode !== null) throw new Error(`agent exited:\n${agentLog}`);
    return (await call<MeshStatus>("GET", "/status")).body.nodes.some((n) => n.nodeId === "tls-node" && n.connected);
  }, "the agent to connect over wss with --ca-file");
});

afterAll(async () => {
  agent?.kill("SIGKILL");
  await broker?.stop();
  await dispatcher?.close();
});

describe("mesh-broker serve over TLS", () => {
  it("serves https only, with the certificate made here, and the dashboard", async () => {
    expect(broker.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    const page = await request(`${broker.url}/`, { dispatcher });
    expect(page.statusCode).toBe(200);
    expect(page.headers["content-type"]).toMatch(/^text\/html/);
    expect(await page.body.text()).toContain("<html");
    // Without the CA, Node refuses the certificate.
    await expect(request(`${broker.url}/healthz`)).rejects.toThrow(/self-signed|certificate/i);
  });

  it("runs the ansible-runner pipeline through meshctl --ca-file, and meshctl trusts NODE_EXTRA_CA_CERTS too", async () => {
    const out = join(dir, "mesh-out");
    const piped = await sh(
      `ansible-runner transmit demo -p site.yml | $MESHCTL --ca-file ${cert} work submit ansible-runner -f -p - | ansible-runner process ${out}`,
    );
    expect(piped.code, piped.stderr).toBe(0);
    const artifacts = join(out, "artifacts");
    const nested = (await readdir(artifacts)).find((e) => e !== "status" && e !== "job_events");
    const status = await readFile(join(artifacts, ...(nested ? [nested] : []), "status"), "utf8").catch(() =>
      readFile(join(artifacts, "status"), "utf8"),
    );
    expect(status.trim()).toBe("successful");

    const refused = await sh("$MESHCTL status");
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toMatch(/certificate/i);
    const extra = await sh("$MESHCTL status --json", { NODE_EXTRA_CA_CERTS: cert });
    expect(extra.code, extra.stderr).toBe(0);
    expect(JSON.parse(extra.stdout.toString()).nodes[0].connected).toBe(true);
  });

  it("keeps the admin token off every command line, and workerd listens on the broker's port only (no inspector)", async () => {
    const cmdlines = await Promise.all(
      (await readdir("/proc"))
        .filter((p) => /^\d+$/.test(p))
        .map((p) => readFile(`/proc/${p}/cmdline`, "utf8").catch(() => "")),
    );
    expect(cmdlines.filter((c) => c.includes("mesh-broker") || c.includes("workerd")).length).toBeGreaterThan(0);
    expect(cmdlines.filter((c) => c.includes(adminToken))).toEqual([]);

    const workerd = (await children(broker.process.pid!))[0]!;
    expect(await readFile(`/proc/${workerd}/cmdline`, "utf8")).toMatch(/workerd/);
    expect(await listeningPorts(workerd)).toEqual([broker.port]);
    expect(await listeningPorts(broker.process.pid!)).toEqual([]);
  });

  it("a restart of serve mid-unit keeps the unit: it finishes with every line, and the state dir is 0700", async () => {
    const script = "for i in $(seq 30); do echo line $i; sleep 0.2; done";
    const created = await call<UnitRecord>(
      "POST",
      `/units?worktype=sh&param.params=${encodeURIComponent(`'${script}'`)}`,
      "",
    );
    expect(created.status).toBe(201);
    const id = created.body.id;
    await waitFor(async () => (await call<UnitRecord>("GET", `/units/${id}`)).body.stdoutSize > 0, "the first output");
    const before = (await call<UnitRecord>("GET", `/units/${id}`)).body;
    await broker.stop();
    // Mid-unit: it was running, with at most part of its output stored, when serve stopped.
    expect(before.state).toBe("Running");
    expect(before.stdoutSize).toBeLessThan("line 30\n".length * 30);
    broker = await start(broker.port);
    await waitFor(
      async () =>
        ["Succeeded", "Failed", "Canceled"].includes((await call<UnitRecord>("GET", `/units/${id}`)).body.state),
      "the unit to finish",
      60_000,
    );
    expect((await call<UnitRecord>("GET", `/units/${id}`)).body.state).toBe("Succeeded");
    const results = await request(`${broker.url}/v1/meshes/${mesh}/units/${id}/results`, {
      dispatcher,
      headers: { authorization: `Bearer ${adminToken}` },
    });
    const text = await results.body.text();
    expect(text.trim().split("\n")).toEqual(Array.from({ length: 30 }, (_, i) => `line ${i + 1}`));
    expect(
      execFileSync("stat", ["-c", "%a", join(dir, "state")])
        .toString()
        .trim(),
    ).toBe("700");
  });
});

describe("mesh-broker serve with a malformed var", () => {
  it("refuses to start, exit 2, naming the var and its value; no workerd is left", async () => {
    const state = await tempDir("serve-misconfigured");
    const run = spawn(
      process.execPath,
      [
        join(ROOT, "dist/serve/cli.js"),
        "serve",
        "--state",
        state,
        "--listen",
        "127.0.0.1:0",
        "--var",
        "MAX_NODES=lots",
      ],
      {
        stdio: ["ignore", "pipe", "pipe"],
        env: { ...process.env, MESH_ADMIN_TOKEN: "unused-admin-token" },
      },
    );
    let stderr = "";
    run.stderr?.on("data", (d) => (stderr += d));
    const code = await new Promise<number | null>((done) => run.once("exit", (c) => done(c)));
    expect(code).toBe(2);
    expect(stderr.trim()).toBe('mesh-broker: broker misconfigured: MAX_NODES must be a positive integer, got "lots"');
    expect(await readdir(state)).not.toContain("workerd.capnp");
  });
});
