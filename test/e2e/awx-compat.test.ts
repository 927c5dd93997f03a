/**
 * AWX's own receptor calls, replayed by Python (test/e2e/fixtures/awx_replay.py, a minimal
 * receptorctl over Debian's python3 and ansible-runner) against two controllers: two
 * `meshctl control-service` bridges with their own node ids and their own agents, sharing one
 * execution node that verifies signatures, on the live broker.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ROOT } from "../../scripts/local-broker.js";
import { MAX_CAPACITY } from "../../shared/protocol.js";
import type { MeshStatus } from "../../shared/unit.js";
import { MESHCTL_BIN, type RunningAgent, api, broker, newMesh, sh, startAgent, tempDir, waitFor } from "./harness.js";

const mesh = newMesh();
const CONTROLLERS = ["awx-1", "awx-2"];
const EXEC = "exec-1";
const agents: RunningAgent[] = [];
const bridges: { process: ChildProcess; log: () => string }[] = [];
let dir: string;

function startBridge(nodeId: string, socket: string, key: string) {
  const { url, token } = broker();
  const child = spawn(
    process.execPath,
    [MESHCTL_BIN, "control-service", "--socket", socket, "--node-id", nodeId, "--sign-key", key],
    {
      env: { ...process.env, MESH_BROKER: url, MESH_TOKEN: token, MESH_ID: mesh },
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  let log = "";
  child.stderr?.on("data", (d) => (log += d));
  bridges.push({ process: child, log: () => log });
  return waitFor(() => {
    if (child.exitCode !== null) throw new Error(`control-service ${nodeId} exited:\n${log}`);
    return log.includes('"event":"control:listening"');
  }, `control service ${nodeId} to listen`);
}

beforeAll(async () => {
  const check = await sh(mesh, "command -v ansible-runner && /usr/bin/python3 -c 'import ansible_runner, yaml'");
  if (check.code !== 0)
    throw new Error(
      "Debian's python3-ansible-runner is not installed: apt-get install -y ansible-core python3-ansible-runner",
    );
  dir = await tempDir("mesh-awx-");
  const keys = await sh(mesh, `$MESHCTL keygen --out ${join(dir, "keys")}`);
  expect(keys.code, keys.stderr).toBe(0);
  // The execution node as AWX's docs configure one: runtime params for --worker-info, signed work only.
  agents.push(
    await startAgent({
      mesh,
      nodeId: EXEC,
      capacity: "unlimited",
      config: `
- work-command: {worktype: ansible-runner, command: ansible-runner, params: worker, allowruntimeparams: true, verifysignature: true}
- work-verification: {publickey: ${join(dir, "keys", "verify-key.pem")}}
`,
    }),
  );
  for (const id of CONTROLLERS) {
    // Each controller's own agent, for AWX's control-node work (receptor's local work-command).
    agents.push(
      await startAgent({
        mesh,
        nodeId: id,
        capacity: "unlimited",
        config:
          "- work-command: {worktype: local, command: ansible-runner, params: worker, allowruntimeparams: true}\n",
      }),
    );
    await startBridge(id, join(dir, `${id}.sock`), join(dir, "keys", "signing-key.pem"));
  }
  // --capacity unlimited: the broker holds nothing back from these nodes, as receptor would not.
  const status = await api<MeshStatus>(mesh, "GET", "/status");
  expect(status.body.nodes.map((n) => n.capacity)).toEqual([MAX_CAPACITY, MAX_CAPACITY, MAX_CAPACITY]);
}, 120_000);

afterAll(async () => {
  for (const bridge of bridges) {
    if (bridge.process.exitCode === null && bridge.process.signalCode === null) {
      const exited = new Promise((resolve) => bridge.process.once("exit", resolve));
      bridge.process.kill("SIGTERM");
      await exited;
    }
  }
  for (const agent of agents) await agent.stop();
});

describe("AWX drop-in", () => {
  it("replays AWX's calls with two controllers: health check, remote and local jobs, results tail, cancel, release, reload, reaper", async () => {
    const config = join(dir, "replay.json");
    await writeFile(
      config,
      JSON.stringify({
        controllers: CONTROLLERS.map((node) => ({ node, socket: join(dir, `${node}.sock`) })),
        exec_node: EXEC,
        work_dir: join(dir, "pdd"),
      }),
    );
    const child = spawn("/usr/bin/python3", [join(ROOT, "test/e2e/fixtures/awx_replay.py"), config], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    const code = await new Promise<number | null>((resolve) => child.once("exit", resolve));
    const { checks, strays } = replayChecks(stdout);
    const context = `stray stdout lines: ${JSON.stringify(strays)}\nstderr: ${stderr}`;
    const failed = checks.filter((c) => !c.ok);
    expect(failed, `${context}\n${bridges.map((b) => b.log()).join("\n")}`).toEqual([]);
    expect(code, context).toBe(0);
    // Every step ran: 15 for each controller (version probe … reload), 5 for the reapers.
    expect(checks.length, context).toBe(2 * 15 + 5);
  }, 300_000);
});

interface Check {
  check: string;
  ok: boolean;
  detail: string;
}

/**
 * The replay's check records, one JSON line each; any other line on its stdout (a library's
 * warning) is set apart to be shown, not parsed: a lost or garbled record still fails the count.
 */
function replayChecks(stdout: string): { checks: Check[]; strays: string[] } {
  const checks: Check[] = [];
  const strays: string[] = [];
  for (const line of stdout.split("\n").filter(Boolean)) {
    let record: unknown;
    try {
      record = JSON.parse(line);
    } catch {
      record = null;
    }
    if (isCheck(record)) checks.push(record);
    else strays.push(line);
  }
  return { checks, strays };
}

function isCheck(value: unknown): value is Check {
  const record = value as Partial<Check> | null;
  return (
    typeof record === "object" &&
    record !== null &&
    typeof record.check === "string" &&
    typeof record.ok === "boolean" &&
    typeof record.detail === "string"
  );
}
