/**
 * `npm start` (scripts/start.ts) on one state dir ($MESH_HOME), twice, on two ports: the second run's
 * agent gets in with its credential moved to the new URL. When its agent exits, npm start says so
 * and exits non-zero instead of hanging.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { request } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ROOT, freePort } from "../../scripts/local-broker.js";
import { tempDir, waitFor } from "./harness.js";

const TSX = join(ROOT, "node_modules/tsx/dist/cli.mjs");
let home: string;
const running = new Set<ChildProcess>();

interface Start {
  child: ChildProcess;
  output(): string;
  exited: Promise<number | null>;
}

function npmStart(port: number): Start {
  const child = spawn(process.execPath, [TSX, join(ROOT, "scripts/start.ts")], {
    cwd: ROOT,
    env: { ...process.env, MESH_HOME: home, MESH_PORT: String(port) },
    stdio: ["ignore", "pipe", "pipe"],
  });
  running.add(child);
  let output = "";
  child.stdout?.on("data", (d) => (output += d));
  child.stderr?.on("data", (d) => (output += d));
  const exited = new Promise<number | null>((resolve) =>
    child.once("exit", (code) => {
      running.delete(child);
      resolve(code);
    }),
  );
  return { child, output: () => output, exited };
}

async function ready(start: Start): Promise<void> {
  await waitFor(
    () => {
      if (start.child.exitCode !== null)
        throw new Error(`npm start exited ${start.child.exitCode}:\n${start.output()}`);
      return start.output().includes("Ctrl-C stops both.");
    },
    "npm start to be ready",
    240_000,
  );
}

beforeAll(async () => {
  home = await tempDir("mesh-home-");
});

afterAll(async () => {
  for (const child of running) {
    child.kill("SIGINT");
    await new Promise((r) => child.once("exit", r));
  }
});

// Each run starts a broker and an agent and runs the demo playbook: minutes on a loaded machine.
describe("npm start", { timeout: 300_000 }, () => {
  let firstPort: number;

  it("runs the demo on a fresh state dir and stops on Ctrl-C", async () => {
    firstPort = await freePort();
    const start = npmStart(firstPort);
    await ready(start);
    expect(start.output()).toMatch(/local\s+connected/);
    start.child.kill("SIGINT");
    expect(await start.exited).toBe(0);
  });

  it("runs again on the same state dir with another port (the node's credential follows the broker); says so and exits non-zero when its agent exits", async () => {
    const port = await freePort();
    const start = npmStart(port);
    await ready(start);
    expect(start.output()).toContain(
      `The local node's credential now names http://127.0.0.1:${port} (it named http://127.0.0.1:${firstPort}).`,
    );
    expect(start.output()).toMatch(/local\s+connected/);
    // The demo ran on the agent (ansible-runner's when installed).
    if (!start.output().includes("ansible-runner is not installed"))
      expect(start.output()).toContain("status: successful");
    expect(await readFile(join(home, "agent.log"), "utf8")).not.toContain("node_taken");

    const token = (await readFile(join(home, "admin-token"), "utf8")).trim();
    // An admin removes the local node: its credential is revoked, so its agent stops for good.
    const removed = await request(`http://127.0.0.1:${port}/v1/meshes/default/nodes/local`, {
      method: "DELETE",
      headers: { authorization: `Bearer ${token}` },
    });
    expect(removed.statusCode).toBe(200);
    await removed.body.dump();
    const code = await Promise.race([start.exited, new Promise((r) => setTimeout(() => r("still running"), 30_000))]);
    expect(code).toBe(1);
    expect(start.output()).toMatch(
      /npm start: the local agent exited \(exit status 1\); its last words: mesh-agent: the broker refused node local's credential/,
    );
  });
});
