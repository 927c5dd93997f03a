/**
 * A full disk fails loudly and frees the slot; a node below its --min-free is passed over. The work
 * dirs are small tmpfs mounts (the tests run as root in CI); where mounting is not permitted the
 * tests are skipped, and say so.
 */
import { execFileSync } from "node:child_process";
import { open, rm } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { MeshStatus, UnitRecord } from "../../shared/unit.js";
import { type RunningAgent, api, newMesh, sh, startAgent, tempDir, waitFinished, waitFor } from "./harness.js";

const MiB = 1024 * 1024;
const SH = `- work-command: {worktype: sh, command: sh, params: "-c", allowruntimeparams: true}\n`;
const mounts: string[] = [];
const agents: RunningAgent[] = [];

async function tmpfs(size: string): Promise<string | null> {
  const dir = await tempDir("mesh-tmpfs-");
  try {
    execFileSync("mount", ["-t", "tmpfs", "-o", `size=${size}`, "tmpfs", dir], { stdio: "pipe" });
  } catch (error) {
    console.warn(
      `disk.test.ts: SKIPPED, cannot mount a tmpfs (needs root): ${error instanceof Error ? error.message : String(error)}`,
    );
    return null;
  }
  mounts.push(dir);
  return dir;
}

/** Writes zeros into `path` until `bytes` are written or the disk is full. */
async function fill(path: string, bytes = Number.POSITIVE_INFINITY): Promise<void> {
  const file = await open(path, "w");
  const chunk = Buffer.alloc(64 * 1024);
  try {
    for (let written = 0; written < bytes; written += chunk.length) await file.write(chunk);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOSPC") throw error;
  } finally {
    await file.close();
  }
}

async function submit(mesh: string, script: string, node?: string): Promise<UnitRecord> {
  const quoted = `'${script.replaceAll("'", `'\\''`)}'`;
  const target = node ? `&node=${node}` : "";
  const reply = await api<UnitRecord>(
    mesh,
    "POST",
    `/units?worktype=sh${target}&param.params=${encodeURIComponent(quoted)}`,
    { body: "" },
  );
  if (reply.status !== 201) throw new Error(`submit: HTTP ${reply.status}: ${JSON.stringify(reply.body)}`);
  return reply.body;
}

afterAll(async () => {
  for (const agent of agents) await agent.stop();
  for (const dir of mounts) {
    try {
      execFileSync("umount", [dir], { stdio: "pipe" });
    } catch {
      execFileSync("umount", ["-l", dir], { stdio: "pipe" });
    }
  }
});

describe("a full work dir", () => {
  const mesh = newMesh();
  let dir: string | null;
  let nodeId: string;

  beforeAll(async () => {
    dir = await tmpfs("8m");
    if (!dir) return;
    nodeId = "full-1";
    // --min-free 0: the node takes units whatever its disk says, so the writes themselves fail.
    agents.push(
      await startAgent({
        mesh,
        nodeId,
        config: SH,
        capacity: 1,
        workDir: join(dir, "work"),
        extraArgs: ["--min-free", "0"],
      }),
    );
  });

  it("before the assignment: the unit fails within seconds naming it, and the slot is freed", async (ctx) => {
    if (!dir) return ctx.skip();
    const filler = join(dir, "filler");
    await fill(filler);
    const started = Date.now();
    const unit = await submit(mesh, "echo never");
    const done = await waitFinished(mesh, unit.id, 15_000);
    expect(done.state).toBe("Failed");
    expect(done.detail).toMatch(
      new RegExp(`^node ${nodeId}: no space left on device while (taking the assignment|writing the payload)$`),
    );
    expect(Date.now() - started).toBeLessThan(10_000);

    await rm(filler);
    // Capacity 1: this runs only if the failed unit gave its slot back, on the agent that kept running.
    const next = await waitFinished(mesh, (await submit(mesh, "echo after")).id, 30_000);
    expect(next).toMatchObject({ state: "Succeeded", node: nodeId });
  });

  it("while the unit runs: its output fills the disk, and the detail says so, not just exit status 1", async (ctx) => {
    if (!dir) return ctx.skip();
    const started = Date.now();
    const unit = await submit(mesh, "head -c 20000000 /dev/zero; echo unreachable");
    const done = await waitFinished(mesh, unit.id, 30_000);
    expect(done.state).toBe("Failed");
    expect(done.detail).toBe(`node ${nodeId}: no space left on device while spooling the output (exit status 1)`);
    expect(done.stdoutSize).toBeGreaterThan(4 * MiB);
    expect(Date.now() - started).toBeLessThan(20_000);

    // Its spool was dropped once the broker held it: space is back and the next unit runs.
    const next = await waitFinished(mesh, (await submit(mesh, "echo after")).id, 30_000);
    expect(next).toMatchObject({ state: "Succeeded", node: nodeId });
  });
});

describe("a full work dir while a command reads a streaming payload", () => {
  const mesh = newMesh();
  let dir: string | null;
  const nodeId = "full-stream";
  // wc writes nothing until its stdin ends: the payload file is what fills the disk.
  const CONFIG = `
- work-command: {worktype: early-wc, command: wc, params: "-c", streamingpayload: true}
- work-command: {worktype: warm-wc, command: wc, params: "-c", streamingpayload: true, warmstart: true}
`;

  beforeAll(async () => {
    dir = await tmpfs("2m");
    if (!dir) return;
    const agent = await startAgent({
      mesh,
      nodeId,
      config: CONFIG,
      capacity: 1,
      workDir: join(dir, "work"),
      extraArgs: ["--min-free", "0"],
    });
    agents.push(agent);
    await waitFor(() => agent.logs().includes('"warm:ready"'), "a warm command ready", 20_000);
  });

  for (const worktype of ["early-wc", "warm-wc"]) {
    it(`${worktype}: the unit fails naming the disk instead of running for ever on a stdin that never ends`, async (ctx) => {
      if (!dir) return ctx.skip();
      const started = Date.now();
      // A first piece, then more than the disk holds while the command already runs on the first.
      const result = await sh(
        mesh,
        `{ head -c 100000 /dev/zero; sleep 1; head -c 6000000 /dev/zero; } | $MESHCTL work submit ${worktype} -p -`,
      );
      expect(result.code, result.stderr).toBe(0);
      const unit = JSON.parse(result.stdout.toString()) as UnitRecord;
      const done = await waitFinished(mesh, unit.id, 30_000);
      expect(done.state).toBe("Failed");
      expect(done.detail).toBe(`node ${nodeId}: no space left on device while writing the payload`);
      expect(Date.now() - started).toBeLessThan(25_000);
      // Capacity 1: the slot is free again and the spool dropped, so a small unit runs.
      const next = await sh(mesh, `echo small | $MESHCTL work submit ${worktype} -f -p -`);
      expect(next.code, next.stderr).toBe(0);
      expect(next.stdout.toString().trim()).toBe("6");
    }, 60_000);
  }
});

describe("a node below its --min-free", () => {
  const mesh = newMesh();
  let dir: string | null;
  const low = "a-low";
  const roomy = "b-roomy";
  const node = async (id: string) =>
    (await api<MeshStatus>(mesh, "GET", "/status")).body.nodes.find((n) => n.nodeId === id);

  beforeAll(async () => {
    dir = await tmpfs("16m");
    if (!dir) return;
    await fill(join(dir, "filler"), 12 * MiB);
    agents.push(
      await startAgent({
        mesh,
        nodeId: low,
        config: SH,
        capacity: 4,
        workDir: join(dir, "work"),
        extraArgs: ["--min-free", "8MiB"],
      }),
    );
    agents.push(await startAgent({ mesh, nodeId: roomy, config: SH, capacity: 4, extraArgs: ["--min-free", "0"] }));
  });

  it("is passed over (another node gets the unit), and status says why", async (ctx) => {
    if (!dir) return ctx.skip();
    expect((await node(low))?.lowDisk).toMatch(/^low disk: [\d.]+ MiB free < 8 MiB$/);
    expect((await node(roomy))?.lowDisk).toBeNull();
    // Both idle, a-low would win the tie by name: only its disk sends the units to b-roomy.
    for (let i = 0; i < 3; i++) {
      const done = await waitFinished(mesh, (await submit(mesh, "echo hi")).id, 30_000);
      expect(done).toMatchObject({ state: "Succeeded", node: roomy });
    }
    const status = await sh(mesh, "$MESHCTL status");
    expect(status.stdout.toString()).toMatch(/^node a-low takes no units: low disk: [\d.]+ MiB free < 8 MiB$/m);
  });

  it("a unit pinned to it waits, and runs once space is freed", async (ctx) => {
    if (!dir) return ctx.skip();
    const unit = await submit(mesh, "echo pinned", low);
    await new Promise((r) => setTimeout(r, 2_000));
    expect((await api<UnitRecord>(mesh, "GET", `/units/${unit.id}`)).body).toMatchObject({
      state: "Pending",
      node: null,
    });
    await rm(join(dir!, "filler"));
    // The agent samples every 5 s and reports the crossing at once.
    await waitFor(async () => (await node(low))?.lowDisk === null, "the node to report space again", 15_000);
    expect(await waitFinished(mesh, unit.id, 15_000)).toMatchObject({ state: "Succeeded", node: low });
  });
});
