/** Real processes for e2e tests: the built agent and meshctl, talking to the shared broker. */
import { type ChildProcess, spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { request } from "undici";
import { inject } from "vitest";
import { ROOT } from "../../scripts/local-broker.js";
import type { MeshStatus, UnitRecord } from "../../shared/unit.js";

export const AGENT_BIN = join(ROOT, "dist/agent/cli.js");
export const MESHCTL_BIN = join(ROOT, "dist/meshctl/cli.js");

export function broker() {
  return inject("broker");
}

export function newMesh(): string {
  return `t-${randomUUID().slice(0, 12)}`;
}

export async function tempDir(prefix = "mesh-test-"): Promise<string> {
  return mkdtemp(join(tmpdir(), prefix));
}

export interface RunningAgent {
  process: ChildProcess;
  workDir: string;
  logs(): string;
  stop(): Promise<void>;
}

const started = new Set<ChildProcess>();

/**
 * Starts `mesh-agent` with a receptor-style config and waits until the broker lists the node.
 * `via` is where the agent dials, when not the broker itself (a proxy in front of it). `workDir`
 * reuses another agent's spool, as a restarted agent would.
 */
export async function startAgent(opts: {
  mesh: string;
  nodeId: string;
  config: string;
  capacity?: number | "unlimited";
  extraArgs?: string[];
  via?: string;
  workDir?: string;
  /** Another Node binary than the tests' own (old-node.test.ts). */
  node?: string;
  /** Joins with this token (else the admin token), given in MESH_TOKEN rather than --token when `tokenInEnv`. */
  token?: string;
  tokenInEnv?: boolean;
  /** Added to the agent's environment. */
  env?: Record<string, string>;
}): Promise<RunningAgent> {
  const dir = await tempDir("mesh-agent-");
  const workDir = opts.workDir ?? join(dir, "work");
  const configPath = join(dir, "agent.yml");
  await writeFile(configPath, opts.config);
  const { url } = broker();
  const token = opts.token ?? broker().token;
  const argv = agentArgv({
    broker: opts.via ?? url,
    token,
    mesh: opts.mesh,
    nodeId: opts.nodeId,
    config: configPath,
    workDir,
  });
  if (opts.tokenInEnv) argv.splice(argv.indexOf("--token"), 2);
  const child = spawn(
    opts.node ?? process.execPath,
    [...argv, "--capacity", String(opts.capacity ?? 2), "--log-level", "debug", ...(opts.extraArgs ?? [])],
    {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, ...opts.env, ...(opts.tokenInEnv ? { MESH_TOKEN: token } : {}) },
    },
  );
  started.add(child);
  let output = "";
  child.stdout?.on("data", (d) => (output += d));
  child.stderr?.on("data", (d) => (output += d));
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const agent: RunningAgent = {
    process: child,
    workDir,
    logs: () => output,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill("SIGKILL");
        await exited;
      }
      started.delete(child);
    },
  };
  await waitFor(async () => {
    if (child.exitCode !== null) throw new Error(`agent exited early:\n${output}`);
    const status = await api<MeshStatus>(opts.mesh, "GET", "/status");
    return status.body.nodes.some((n) => n.nodeId === opts.nodeId && n.connected);
  }, `node ${opts.nodeId} to connect`);
  return agent;
}

export async function waitFor(
  check: () => Promise<boolean> | boolean,
  what: string,
  timeoutMs = 30_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The built agent's command line, for tests that start agents of their own (`node ...argv`). */
export function agentArgv(opts: {
  broker: string;
  token: string;
  mesh: string;
  nodeId: string;
  config: string;
  workDir: string;
}): string[] {
  return [
    AGENT_BIN,
    "--broker",
    opts.broker,
    "--token",
    opts.token,
    "--mesh",
    opts.mesh,
    "--node-id",
    opts.nodeId,
    "--config",
    opts.config,
    "--work-dir",
    opts.workDir,
  ];
}

/** Status and body of an answer: JSON where it parses, raw text (results) otherwise. */
export async function readReply<T>(
  response: Awaited<ReturnType<typeof request>>,
): Promise<{ status: number; body: T }> {
  const text = await response.body.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    // Raw bytes (results) stay text.
  }
  return { status: response.statusCode, body: body as T };
}

export async function api<T = unknown>(
  mesh: string,
  method: "GET" | "POST" | "DELETE",
  path: string,
  options: { body?: string | Buffer; token?: string | null; headers?: Record<string, string> } = {},
): Promise<{ status: number; body: T }> {
  const { url, token } = broker();
  const auth = options.token === null ? {} : { authorization: `Bearer ${options.token ?? token}` };
  return readReply<T>(
    await request(`${url}/v1/meshes/${mesh}${path}`, {
      method,
      headers: { ...auth, ...options.headers },
      body: options.body ?? null,
    }),
  );
}

/** Creates a token of `role` in `mesh` (with the admin token, or the token `as`). */
export async function createToken(
  mesh: string,
  role: string,
  opts: { name?: string; as?: string } = {},
): Promise<{ id: string; token: string }> {
  const created = await api<{ id: string; token: string }>(mesh, "POST", "/tokens", {
    body: JSON.stringify({ role, name: opts.name ?? `test ${role}` }),
    headers: { "content-type": "application/json" },
    ...(opts.as ? { token: opts.as } : {}),
  });
  if (created.status !== 201)
    throw new Error(`create ${role} token: HTTP ${created.status}: ${JSON.stringify(created.body)}`);
  return created.body;
}

/**
 * Submits `command` to a work type that runs `sh -c` with runtime params (`allowruntimeparams`),
 * quoted because the agent splits runtime params as a shell would. Does not wait for it.
 */
export async function submitScript(mesh: string, command: string, worktype = "sh"): Promise<UnitRecord> {
  const quoted = `'${command.replaceAll("'", `'\\''`)}'`;
  const reply = await api<UnitRecord>(
    mesh,
    "POST",
    `/units?worktype=${worktype}&param.params=${encodeURIComponent(quoted)}`,
    { body: "" },
  );
  if (reply.status !== 201) throw new Error(`submit: HTTP ${reply.status}: ${JSON.stringify(reply.body)}`);
  return reply.body;
}

/** Waits for the unit to reach a final state and returns its record. */
export async function waitFinished(mesh: string, id: string, timeoutMs = 90_000): Promise<UnitRecord> {
  let record: UnitRecord | undefined;
  await waitFor(
    async () => {
      record = (await api<UnitRecord>(mesh, "GET", `/units/${id}`)).body;
      return ["Succeeded", "Failed", "Canceled"].includes(record.state);
    },
    `unit ${id} to finish`,
    timeoutMs,
  );
  return record!;
}

export interface CliResult {
  code: number;
  stdout: Buffer;
  stderr: string;
}

/** Runs a shell pipeline with meshctl on PATH-like variable $MESHCTL and the broker in the env. */
export function sh(mesh: string, script: string, cwd = ROOT): Promise<CliResult> {
  const { url, token } = broker();
  return new Promise((resolve) => {
    const child = spawn("bash", ["-o", "pipefail", "-c", script], {
      cwd,
      env: {
        ...process.env,
        MESH_BROKER: url,
        MESH_TOKEN: token,
        MESH_ID: mesh,
        MESHCTL: `${process.execPath} ${MESHCTL_BIN}`,
      },
    });
    const out: Buffer[] = [];
    let err = "";
    child.stdout.on("data", (d: Buffer) => out.push(d));
    child.stderr.on("data", (d) => (err += d));
    child.once("exit", (code) => resolve({ code: code ?? 1, stdout: Buffer.concat(out), stderr: err }));
  });
}

/**
 * Helpers for files whose agents run `sh -c SCRIPT` units (work type `sh`, runtime params) in one
 * mesh: stop an agent and wait for its node to drop, submit to a node, read and wait for a unit.
 */
export function shUnits(mesh: string) {
  const unit = async (id: string) => (await api<UnitRecord>(mesh, "GET", `/units/${id}`)).body;
  return {
    /** Stops the agent process alone (the units' process groups live on) and waits for its node to drop. */
    async crash(agent: RunningAgent, nodeId: string): Promise<void> {
      await agent.stop();
      await waitFor(async () => {
        const status = await api<MeshStatus>(mesh, "GET", "/status");
        return !status.body.nodes.some((n) => n.nodeId === nodeId && n.connected);
      }, `node ${nodeId} to disconnect`);
    },
    /** Runs `sh -c SCRIPT` on `node`. */
    async submit(node: string, script: string): Promise<string> {
      const reply = await api<UnitRecord>(
        mesh,
        "POST",
        `/units?worktype=sh&node=${node}&param.params=${encodeURIComponent(`'${script}'`)}`,
        { body: "" },
      );
      if (reply.status !== 201) throw new Error(`submit to ${node}: HTTP ${reply.status}`);
      return reply.body.id;
    },
    unit,
    until: (id: string, states: string[], ms = 30_000) =>
      waitFor(async () => states.includes((await unit(id)).state), `unit ${id} to be ${states.join("/")}`, ms),
  };
}

/** Whether a process exists (signal 0 checks without sending anything). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
