/**
 * WarmPool (agent/warm.ts) with real supervisors and commands: built from dist/, like
 * process.test.ts, so that process.ts finds supervise.js beside itself.
 */
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readFile, readdir, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import type { WorkCommand } from "../../agent/config.js";
import type { WarmPool as Pool } from "../../agent/warm.js";
import type { Logger } from "../../shared/node/log.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const { WarmPool }: typeof import("../../agent/warm.js") = await import(join(ROOT, "dist/agent/warm.js"));
const { commandLine }: typeof import("../../agent/command-args.js") = await import(
  join(ROOT, "dist/agent/command-args.js")
);
const { Supervisor }: typeof import("../../agent/supervisor.js") = await import(join(ROOT, "dist/agent/supervisor.js"));

beforeAll(async () => {
  for (const name of ["warm", "process", "supervise", "supervisor", "stdin-feed"]) {
    const [from, to] = await Promise.all([
      stat(join(ROOT, "agent", `${name}.ts`)),
      stat(join(ROOT, "dist/agent", `${name}.js`)).catch(() => null),
    ]);
    if (!to || to.mtimeMs < from.mtimeMs)
      throw new Error(`dist/agent/${name}.js is missing or stale: run npm run build`);
  }
});

const work = (command: string, params: string): WorkCommand => ({
  worktype: "w",
  command,
  params,
  allowruntimeparams: true,
  verifysignature: false,
  streamingpayload: true,
  warmstart: true,
  envallow: [],
});

const pools: Pool[] = [];
const supervisors: InstanceType<typeof Supervisor>[] = [];
afterEach(async () => {
  await Promise.all(pools.splice(0).map((p) => p.stop()));
  for (const supervisor of supervisors.splice(0)) supervisor.stop();
});

function setup(w: WorkCommand) {
  const events: { event: string; fields: Record<string, unknown>; at: number }[] = [];
  const push = (event: string, fields: Record<string, unknown> = {}) => events.push({ event, fields, at: Date.now() });
  const log: Logger = { debug: push, info: push, warn: push, error: push };
  return mkdtemp(join(tmpdir(), "mesh-warm-")).then((base) => {
    const dir = join(base, "warm");
    const supervisor = new Supervisor();
    supervisors.push(supervisor);
    const pool = new WarmPool({
      dir,
      workCommands: [w],
      lineFor: (x) => commandLine(x, {}, process.env, []),
      supervisor,
      log,
    });
    pools.push(pool);
    const count = (event: string) => events.filter((e) => e.event === event).length;
    return { base, dir, pool, events, count };
  });
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

describe("WarmPool", () => {
  it("empties its directory, starts one instance, and hands it only to the same command line", async () => {
    const w = work("sh", "-c 'echo up; cat'");
    const { dir, pool, count, base } = await setup(w);
    await mkdir(join(dir, "stale"), { recursive: true });
    await pool.start();
    expect(existsSync(join(dir, "stale"))).toBe(false);
    await vi.waitFor(() => expect(count("warm:ready")).toBe(1), { timeout: 5_000 });
    const other = commandLine(w, { params: "-u" }, process.env, []);
    if ("error" in other) throw new Error(other.error);
    expect(pool.take(w, other)).toBeNull();
    const line = commandLine(w, {}, process.env, []);
    if ("error" in line) throw new Error(line.error);
    const warm = pool.take(w, line)!;
    expect(warm).not.toBeNull();
    expect(pool.take(w, line)).toBeNull(); // one instance, taken
    // The unit's directory is the instance's, renamed: its output and its exit file follow.
    const unitDir = join(base, "units", "u1");
    await mkdir(unitDir, { recursive: true });
    await writeFile(join(unitDir, "left-over"), "");
    await warm.moveTo(unitDir);
    await warm.feed.write(Buffer.from("payload\n"));
    await warm.feed.end();
    expect(await warm.process.exited).toEqual({ exitCode: 0, signal: null, error: null });
    expect(await readFile(join(unitDir, "stdout"), "utf8")).toBe("up\npayload\n");
    expect((await readdir(unitDir)).sort()).toEqual(["exit", "stdin.fifo", "stdout", "work"].sort());
    // Its end lets the next one start.
    await vi.waitFor(() => expect(count("warm:ready")).toBe(2), { timeout: 5_000 });
  });

  it("starts another after a waiting one is killed, and lets the last go on stop", async () => {
    const { pool, events, count, dir } = await setup(work("cat", ""));
    await pool.start();
    await vi.waitFor(() => expect(count("warm:ready")).toBe(1), { timeout: 5_000 });
    const first = events.find((e) => e.event === "warm:ready")!.fields.pid as number;
    process.kill(-first, "SIGKILL");
    await vi.waitFor(() => expect(count("warm:exited")).toBe(1), { timeout: 5_000 });
    await vi.waitFor(() => expect(count("warm:ready")).toBe(2), { timeout: 5_000 });
    const second = events.filter((e) => e.event === "warm:ready")[1]!.fields.pid as number;
    expect(second).not.toBe(first);
    await pool.stop();
    expect(alive(second)).toBe(false);
    expect(await readdir(dir)).toEqual([]);
  });

  it("a new start ends the instances an agent that died left waiting, even one not reading its stdin yet", async () => {
    // Reads its stdin only after a long while: the end of its stdin would not end it soon.
    const w = work("sh", "-c 'sleep 300; cat'");
    const first = await setup(w);
    await first.pool.start();
    await vi.waitFor(() => expect(first.count("warm:ready")).toBe(1), { timeout: 5_000 });
    const left = first.events.find((e) => e.event === "warm:ready")!.fields.pid as number;
    // The agent that started it is gone without a stop: the next run's pool starts on the same directory.
    const log: Logger = {
      debug: () => undefined,
      info: () => undefined,
      warn: () => undefined,
      error: () => undefined,
    };
    const supervisor = new Supervisor();
    supervisors.push(supervisor);
    const next = new WarmPool({
      dir: first.dir,
      workCommands: [],
      lineFor: (x) => commandLine(x, {}, process.env, []),
      log,
      supervisor,
    });
    pools.push(next);
    await next.start();
    await vi.waitFor(() => expect(alive(left)).toBe(false), { timeout: 5_000 });
    expect(existsSync(first.dir)).toBe(false);
  });

  it("does not loop on a command that cannot start: each retry waits twice as long", async () => {
    const { pool, events, count } = await setup(work("no-such-command-here", ""));
    await pool.start();
    await vi.waitFor(() => expect(count("warm:start-failed")).toBe(3), { timeout: 8_000 });
    const at = events.filter((e) => e.event === "warm:start-failed").map((e) => e.at);
    expect(at[1]! - at[0]!).toBeGreaterThanOrEqual(900);
    expect(at[2]! - at[1]!).toBeGreaterThanOrEqual(1_900);
    expect(events[0]!.fields.error).toMatch(/not found on PATH/);
  });
});
