/**
 * Live follow while a unit streams results as fast as its agent can send them: followers keep
 * receiving during the run (not only once the unit ends), every byte in order, and the broker
 * answers other requests meanwhile. The stream is random bytes in base64, written as fast as it
 * goes; a lost, doubled or reordered piece changes the digest. A slow follower gets every byte too,
 * without holding the unit up.
 */
import { spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { request } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  MESHCTL_BIN,
  type RunningAgent,
  broker,
  newMesh,
  startAgent,
  submitScript,
  tempDir,
  waitFinished,
} from "./harness.js";

const mesh = newMesh();
const MIB = 1024 * 1024;
let agent: RunningAgent;
let dir: string;

beforeAll(async () => {
  dir = await tempDir();
  agent = await startAgent({
    mesh,
    nodeId: "firehose",
    config: `- work-command: {worktype: sh, command: sh, params: "-c", allowruntimeparams: true}`,
  });
});

afterAll(async () => {
  await agent.stop();
});

/** What a follower received: its digest, its size and when each piece came. */
class Received {
  private readonly hash = createHash("sha256");
  bytes = 0;
  readonly times: number[] = [];

  add(chunk: Buffer): void {
    this.hash.update(chunk);
    this.bytes += chunk.byteLength;
    this.times.push(performance.now());
  }

  digest(): string {
    return this.hash.digest("hex");
  }

  /** From the first piece to the last (ms), for the log. */
  span(): number {
    return (this.times.at(-1) ?? 0) - (this.times[0] ?? 0);
  }

  /** The longest wait between two pieces (ms): a stalled follower waits most of the run. */
  longestSilence(): number {
    let longest = 0;
    for (let i = 1; i < this.times.length; i++) longest = Math.max(longest, this.times[i]! - this.times[i - 1]!);
    return longest;
  }
}

/**
 * A command writing a file of `mib` random MiB as base64 (lines, as a job's output comes), as fast
 * as it goes; and the digest of what it writes, from the same command run here.
 */
async function source(name: string, mib: number): Promise<{ command: string; digest: string; bytes: number }> {
  const file = join(dir, name);
  await writeFile(file, randomBytes(mib * MIB));
  const command = `base64 ${file}`;
  const written = new Received();
  const child = spawn("sh", ["-c", command], { stdio: ["ignore", "pipe", "inherit"] });
  child.stdout.on("data", (chunk: Buffer) => written.add(chunk));
  await new Promise((resolve) => child.once("exit", resolve));
  return { command, digest: written.digest(), bytes: written.bytes };
}

/** GET results?follow=1; `pause` ms after each piece makes a deliberately slow reader. */
async function followHttp(id: string, pause = 0): Promise<Received> {
  const { url, token } = broker();
  const response = await request(`${url}/v1/meshes/${mesh}/units/${id}/results?follow=1`, {
    headers: { authorization: `Bearer ${token}` },
    bodyTimeout: 120_000,
  });
  expect(response.statusCode).toBe(200);
  const received = new Received();
  for await (const chunk of response.body as AsyncIterable<Buffer>) {
    received.add(chunk);
    if (pause) await new Promise((r) => setTimeout(r, pause));
  }
  return received;
}

/** `meshctl work results ID -f`, as a person or a pipe into `ansible-runner process` runs it. */
function followMeshctl(id: string): Promise<Received> {
  const { url, token } = broker();
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [MESHCTL_BIN, "work", "results", id, "-f"], {
      env: { ...process.env, MESH_BROKER: url, MESH_TOKEN: token, MESH_ID: mesh },
      stdio: ["ignore", "pipe", "pipe"],
    });
    const received = new Received();
    let stderr = "";
    child.stdout.on("data", (chunk: Buffer) => received.add(chunk));
    child.stderr.on("data", (d) => (stderr += d));
    child.once("error", reject);
    child.once("exit", (code) =>
      code === 0 ? resolve(received) : reject(new Error(`meshctl exited ${code}: ${stderr}`)),
    );
  });
}

/** The slowest answer to GET /healthz, asked every 50 ms until `done` settles (ms). */
async function slowestHealthz(done: Promise<unknown>): Promise<number> {
  const { url } = broker();
  let finished = false;
  void done.finally(() => (finished = true));
  let slowest = 0;
  while (!finished) {
    const asked = performance.now();
    await (await request(`${url}/healthz`)).body.text();
    slowest = Math.max(slowest, performance.now() - asked);
    await new Promise((r) => setTimeout(r, 50));
  }
  return slowest;
}

describe("live follow of full-speed results streams", () => {
  it("followers receive all the way through the run, byte for byte, and the broker keeps answering", async () => {
    // Two units at once, 2 × 135 MiB as fast as the agent sends them: seconds of a busy broker.
    const [one, two] = await Promise.all([source("one", 100), source("two", 100)]);
    const units = await Promise.all([submitScript(mesh, one.command), submitScript(mesh, two.command)]);
    const followers = Promise.all([followHttp(units[0]!.id), followMeshctl(units[0]!.id), followHttp(units[1]!.id)]);
    const [[http, meshctl, other], slowest] = await Promise.all([followers, slowestHealthz(followers)]);
    for (const unit of units) expect((await waitFinished(mesh, unit.id)).state).toBe("Succeeded");
    for (const [received, want] of [
      [http, one],
      [meshctl, one],
      [other, two],
    ] as const) {
      expect(received.bytes).toBe(want.bytes);
      expect(received.digest()).toBe(want.digest);
    }
    const report = (name: string, r: Received) =>
      `${name}: ${(r.bytes / MIB / (r.span() / 1000)).toFixed(0)} MiB/s over ${r.span().toFixed(0)} ms, longest silence ${r.longestSilence().toFixed(0)} ms`;
    console.log(
      `${report("http", http)}; ${report("meshctl", meshctl)}; ${report("other", other)}; slowest healthz ${slowest.toFixed(0)} ms`,
    );
    // Without the pacing (broker/unit/write-pacer.ts) a follower sat silent, often from its first few
    // MiB until the unit ended, for as long as the agent kept the broker busy, and so did every other
    // request: on a loaded machine (load 9–10) the longest silence was 1.7–4.3 s and the slowest
    // healthz 1.7–4.0 s in five runs; with it at most 0.3 and 0.4 s, in two.
    for (const received of [http, meshctl, other]) expect(received.longestSilence()).toBeLessThan(1_500);
    expect(slowest).toBeLessThan(1_500);
  });

  it("a slow follower gets every byte and does not hold the unit up", async () => {
    const want = await source("slow", 32);
    const unit = await submitScript(mesh, want.command);
    // About 6 MiB/s: pieces of at most 64 KiB, 10 ms apart.
    const slow = followHttp(unit.id, 10);
    const record = await waitFinished(mesh, unit.id);
    const endedFirst = await Promise.race([slow.then(() => false), Promise.resolve(true)]);
    const received = await slow;
    expect(record.state).toBe("Succeeded");
    expect(endedFirst).toBe(true);
    expect(received.bytes).toBe(want.bytes);
    expect(received.digest()).toBe(want.digest);
  });
});
