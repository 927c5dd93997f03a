/**
 * Warm starts (agent/warm.ts): a work type with `warmstart` has its command started ahead, waiting
 * on its stdin; the next unit with the same command line takes it and feeds it its payload. The
 * commands here print when they started before reading stdin, which tells a warm start from a cold
 * one. A unit whose line differs (runtime params) starts cold; the agent leaves no warm process behind.
 */
import { randomBytes } from "node:crypto";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { UnitRecord } from "../../shared/unit.js";
import { type RunningAgent, api, newMesh, isAlive, sh, startAgent, tempDir, waitFinished, waitFor } from "./harness.js";

const mesh = newMesh();
let agent: RunningAgent;
let dir: string;

// Prints its start time (ms) on one line, then its stdin.
const CONFIG = `
- work-command:
    worktype: warm-cat
    command: sh
    params: -c "date +%s%3N; cat"
    streamingpayload: true
    warmstart: true
    allowruntimeparams: true
`;

/** The agent's log lines with `event`, parsed. */
function logged(event: string): Record<string, unknown>[] {
  return agent
    .logs()
    .split("\n")
    .filter((line) => line.includes(`"${event}"`))
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

const readyCount = () => logged("warm:ready").length;

async function lastUnit(): Promise<UnitRecord> {
  const units = (await api<UnitRecord[]>(mesh, "GET", "/units")).body;
  return units[units.length - 1]!;
}

/** Submits `payload` through a pipe and returns the command's start time and what it printed after. */
async function submit(
  payload: Buffer,
  extra = "",
): Promise<{ startedAt: number; output: Buffer; submittedAt: number }> {
  const file = join(dir, `payload-${Date.now()}`);
  await writeFile(file, payload);
  const submittedAt = Date.now();
  const result = await sh(mesh, `cat ${file} | $MESHCTL work submit warm-cat ${extra} -f -p -`);
  expect(result.code, result.stderr).toBe(0);
  const out = result.stdout;
  const newline = out.indexOf(10);
  return { startedAt: Number(out.subarray(0, newline).toString()), output: out.subarray(newline + 1), submittedAt };
}

beforeAll(async () => {
  dir = await tempDir();
  agent = await startAgent({ mesh, nodeId: "warm-node", config: CONFIG });
  await waitFor(() => readyCount() >= 1, "a warm command ready", 20_000);
});

afterAll(async () => {
  await agent.stop();
});

describe("warm starts", () => {
  it("a unit takes the command started before it was submitted, which reads the payload byte for byte", async () => {
    const payload = randomBytes(1_500_000);
    const { startedAt, output, submittedAt } = await submit(payload);
    expect(startedAt).toBeLessThan(submittedAt);
    expect(output.equals(payload)).toBe(true);
    const unit = await lastUnit();
    expect(unit.state).toBe("Succeeded");
    expect(logged("unit:started").find((e) => e.unit === unit.id)).toMatchObject({ warm: true });
  });

  it("the next unit gets a command started after the first one ended", async () => {
    await waitFor(() => readyCount() >= 2, "a second warm command", 20_000);
    const first = (await lastUnit()).id;
    const { startedAt, output, submittedAt } = await submit(Buffer.from("second\n"));
    expect(output.toString()).toBe("second\n");
    expect(startedAt).toBeLessThan(submittedAt);
    expect((await lastUnit()).id).not.toBe(first);
  });

  it("a unit whose command line differs (runtime params) starts cold, and the warm command stays for the next", async () => {
    await waitFor(() => readyCount() >= 3, "a third warm command", 20_000);
    const ready = readyCount();
    const file = join(dir, "params");
    await writeFile(file, "x");
    const submittedAt = Date.now();
    const result = await sh(mesh, `$MESHCTL work submit warm-cat -a params=-u -f -p ${file}`);
    // sh -u -c "…": a different line, run cold, after the submit.
    expect(result.code, result.stderr).toBe(0);
    expect(Number(result.stdout.toString().split("\n")[0])).toBeGreaterThanOrEqual(submittedAt);
    const unit = await lastUnit();
    expect(logged("unit:started").find((e) => e.unit === unit.id)?.warm).toBeUndefined();
    // The waiting one is still there, and the next plain unit takes it.
    const { startedAt } = await submit(Buffer.from("y"));
    expect(startedAt).toBeLessThan(submittedAt);
    expect(readyCount()).toBeGreaterThanOrEqual(ready);
  });

  it("a canceled unit stops the warm command it took while its payload was still coming", async () => {
    await waitFor(
      () => logged("warm:ready").length > logged("unit:started").filter((e) => e.warm).length,
      "a warm command",
      20_000,
    );
    const before = (await lastUnit()).id;
    // The producer writes a line, then nothing for 5 s: the unit runs on a payload still coming.
    const bg = await sh(mesh, "{ echo part; sleep 5; } | $MESHCTL work submit warm-cat -p - >/dev/null 2>&1 &");
    expect(bg.code).toBe(0);
    await waitFor(async () => (await lastUnit()).id !== before, "the unit submitted");
    const unit = await lastUnit();
    await waitFor(
      async () => (await api<UnitRecord>(mesh, "GET", `/units/${unit.id}`)).body.state === "Running",
      "running",
    );
    const pid = logged("unit:started").find((e) => e.unit === unit.id)?.pid as number;
    expect(logged("unit:started").find((e) => e.unit === unit.id)?.warm).toBe(true);
    await api(mesh, "POST", `/units/${unit.id}/cancel`);
    const done = await waitFinished(mesh, unit.id);
    expect(done.state).toBe("Canceled");
    await waitFor(() => !isAlive(pid), "the warm command's supervisor gone", 10_000);
  });
});

describe("warm starts on the agent's way out", () => {
  it("a stopped agent leaves no warm command running", async () => {
    await waitFor(
      () => logged("warm:ready").length > logged("unit:started").filter((e) => e.warm).length,
      "a warm command",
      20_000,
    );
    const ready = logged("warm:ready");
    const pid = ready[ready.length - 1]!.pid as number;
    expect(isAlive(pid)).toBe(true);
    await agent.stop();
    await waitFor(() => !isAlive(pid), "the warm command gone", 10_000);
  });
});
