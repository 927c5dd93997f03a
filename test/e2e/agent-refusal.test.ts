/**
 * The agent tells a broker it cannot reach (retry, with the backoff in the log) from a broker that
 * refuses it for good (exit 1 with one line saying what to do): a revoked credential, a node id
 * already joined, a credential bound to another broker URL.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { MeshStatus } from "../../shared/unit.js";
import { type CutProxy, startCutProxy } from "./cut-proxy.js";
import { agentArgv, api, broker, newMesh, tempDir, waitFor } from "./harness.js";

const SH = `- work-command: {worktype: sh, command: sh, params: "-c", allowruntimeparams: true}\n`;
const mesh = newMesh();
const nodeId = "refusal-1";
const children = new Set<ChildProcess>();
let proxy: CutProxy;
let dir: string;
let config: string;

interface Agent {
  child: ChildProcess;
  logs(): string;
  exited: Promise<number | null>;
}

function spawnAgent(url: string, workDir: string): Agent {
  const child = spawn(
    process.execPath,
    agentArgv({ broker: url, token: broker().token, mesh, nodeId, config, workDir }),
    {
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  children.add(child);
  let output = "";
  child.stdout?.on("data", (d) => (output += d));
  child.stderr?.on("data", (d) => (output += d));
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  return { child, logs: () => output, exited };
}

const connected = async () =>
  Boolean((await api<MeshStatus>(mesh, "GET", "/status")).body.nodes.find((n) => n.nodeId === nodeId)?.connected);
const lines = (agent: Agent, event: string) =>
  agent
    .logs()
    .split("\n")
    .filter((l) => l.includes(`"event":"${event}"`));
/** Its last line, which must be the only one that is not a JSON log line. */
function farewell(agent: Agent): string {
  const plain = agent
    .logs()
    .trimEnd()
    .split("\n")
    .filter((l) => !l.startsWith("{"));
  expect(plain).toHaveLength(1);
  return plain[0]!;
}

beforeAll(async () => {
  dir = await tempDir("mesh-refusal-");
  config = join(dir, "agent.yml");
  await writeFile(config, SH);
  proxy = await startCutProxy(Number(new URL(broker().url).port));
});

afterAll(async () => {
  for (const child of children) child.kill("SIGKILL");
  await proxy.close();
});

describe("agent facing a broker that is down or says no", () => {
  const workDir = () => join(dir, "work");

  it("broker unreachable: logs it with the retry delay, keeps trying, and gives no advice about its credential", async () => {
    const agent = spawnAgent(proxy.url, workDir());
    await waitFor(connected, "the node to join through the proxy");
    // Joined, then back with its credential: only a used credential makes the node id taken.
    await waitFor(
      () => lines(agent, "control:connected").length >= 2,
      "the agent to reconnect with its credential",
      60_000,
    );
    proxy.down();
    await waitFor(() => lines(agent, "control:broker-unreachable").length >= 5, "five failed reconnects", 40_000);
    for (const line of lines(agent, "control:broker-unreachable")) {
      expect(JSON.parse(line)).toMatchObject({
        level: "warn",
        message: expect.stringMatching(/^broker unreachable, retrying in \d+\.\d s$/),
      });
    }
    expect(agent.logs()).not.toMatch(/credential\.json|revoked/);
    expect(agent.child.exitCode).toBeNull();
    proxy.up();
    await waitFor(connected, "the node to reconnect once the broker is back", 40_000);
    agent.child.kill("SIGKILL");
    await agent.exited;
  });

  it("credential bound to another broker URL: exits 1 after one refused join, saying which URL to use", async () => {
    // Same broker, reached by another URL: the credential is not offered, so the join is refused as taken.
    const agent = spawnAgent(broker().url, workDir());
    expect(await agent.exited).toBe(1);
    expect(lines(agent, "control:broker-error")).toHaveLength(1);
    expect(farewell(agent)).toBe(
      `mesh-agent: node ${nodeId} has already joined mesh ${mesh}, and its credential in ${join(workDir(), "credential.json")} is for broker ${proxy.url}, not ${broker().url}; start with --broker ${proxy.url} if that is the same broker, else have an admin run \`meshctl node remove ${nodeId}\` and start again to join anew`,
    );
  });

  it("node id taken by another agent's credential: exits 1 at once", async () => {
    const agent = spawnAgent(broker().url, join(dir, "other-work"));
    expect(await agent.exited).toBe(1);
    // Refused at the socket (the node is connected or its credential was used), before any hello.
    expect(farewell(agent)).toBe(
      `mesh-agent: node ${nodeId} is connected or has joined already; a second agent cannot take over its id; start with another --node-id, or have an admin run \`meshctl node remove ${nodeId}\` and start again to join anew`,
    );
  });

  it("credential revoked (node removed by an admin): exits 1 saying to delete the credential and join again", async () => {
    const agent = spawnAgent(proxy.url, workDir());
    await waitFor(connected, "the node to reconnect with its credential");
    expect((await api(mesh, "DELETE", `/nodes/${nodeId}`)).status).toBe(200);
    const code = await Promise.race([agent.exited, new Promise((r) => setTimeout(() => r("still running"), 60_000))]);
    expect(code).toBe(1);
    expect(farewell(agent)).toMatch(
      new RegExp(
        `^mesh-agent: the broker refused node ${nodeId}'s credential: invalid or revoked token .*delete ${join(workDir(), "credential.json")} and start with a join token`,
      ),
    );
  });
});
