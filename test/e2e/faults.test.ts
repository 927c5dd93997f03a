/**
 * Units survive faults: links cut at random moments of a results or payload stream, links down
 * while a cancel is issued, a broker restart mid-unit, a follower that never reads, and status polls
 * racing a release. Every check compares the bytes received with the copy the other end holds.
 * Seeded: set FAULT_SEED to replay a failing run's cut points.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { createHash, randomBytes, randomInt } from "node:crypto";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { request } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type LocalBroker, freePort, startBroker } from "../../scripts/local-broker.js";
import { seeded } from "../../scripts/sim/shards.js";
import { isTerminal } from "../../shared/states.js";
import type { MeshStatus, UnitRecord, UnitSummary } from "../../shared/unit.js";
import { type CutProxy, startCutProxy } from "./cut-proxy.js";
import {
  agentArgv,
  MESHCTL_BIN,
  type RunningAgent,
  api,
  broker,
  newMesh,
  startAgent,
  tempDir,
  waitFor,
} from "./harness.js";

const MiB = 1024 * 1024;
const SH = `- work-command: {worktype: sh, command: sh, params: "-c", allowruntimeparams: true}\n`;
const mesh = newMesh();
const seed = Number(process.env.FAULT_SEED ?? randomInt(2 ** 31));
const cleanup: (() => Promise<void> | void)[] = [];
let proxy: CutProxy;
let agent: RunningAgent;
let dir: string;

beforeAll(async () => {
  console.log(`faults: seed ${seed} (FAULT_SEED=${seed} replays it)`);
  dir = await tempDir("mesh-faults-");
  proxy = await startCutProxy(Number(new URL(broker().url).port));
  agent = await startAgent({ mesh, nodeId: "cut", config: SH, capacity: 4, via: proxy.url });
  cleanup.push(
    () => agent.stop(),
    () => proxy.close(),
  );
});

afterAll(async () => {
  for (const step of cleanup.reverse()) await step();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const sha256 = (data: Buffer) => createHash("sha256").update(data).digest("hex");

/** `sh -c SCRIPT` on the agent, submitted straight to the broker. */
async function submit(script: string): Promise<UnitRecord> {
  const reply = await api<UnitRecord>(
    mesh,
    "POST",
    `/units?worktype=sh&param.params=${encodeURIComponent(`'${script}'`)}`,
    { body: "" },
  );
  expect(reply.status).toBe(201);
  return reply.body;
}

const unit = async (id: string) => (await api<UnitRecord>(mesh, "GET", `/units/${id}`)).body;
const until = (id: string, states: string[], timeoutMs = 60_000) =>
  waitFor(async () => states.includes((await unit(id)).state), `unit ${id} to be ${states.join("/")}`, timeoutMs);

interface Followed {
  code: number;
  bytes: number;
  sha256: string;
  stderr: string;
}

/** meshctl against `brokerUrl`, hashing what it prints as it arrives. */
function meshctl(
  brokerUrl: string,
  token: string,
  meshId: string,
  args: string[],
): { child: ChildProcess; done: Promise<Followed> } {
  const child = spawn(process.execPath, [MESHCTL_BIN, ...args], {
    env: { ...process.env, MESH_BROKER: brokerUrl, MESH_TOKEN: token, MESH_ID: meshId },
    stdio: ["ignore", "pipe", "pipe"],
  });
  cleanup.push(() => void child.kill("SIGKILL"));
  const hash = createHash("sha256");
  let bytes = 0;
  let stderr = "";
  child.stdout!.on("data", (d: Buffer) => {
    hash.update(d);
    bytes += d.byteLength;
  });
  child.stderr!.on("data", (d) => (stderr += d));
  const done = new Promise<Followed>((resolve) =>
    child.once("close", (code) => resolve({ code: code ?? 1, bytes, sha256: hash.digest("hex"), stderr })),
  );
  return { child, done };
}

const follow = (brokerUrl: string, token: string, meshId: string, id: string) =>
  meshctl(brokerUrl, token, meshId, ["work", "results", id, "-f"]);

/** Bounded wait for a promise; the bound is a hang detector, not a performance assertion. */
async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>(
    (_, reject) => (timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms)),
  );
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

describe("faults", () => {
  it("100 link cuts during a 50 MiB results stream: the follower gets exactly the bytes written", {
    timeout: 90_000,
  }, async () => {
    const size = 50 * MiB;
    const cuts = 100;
    const written = join(dir, "cut-written.bin");
    const started = Date.now();
    const { id } = await submit(`head -c ${size} /dev/urandom | tee ${written}`);
    const follower = follow(proxy.url, broker().token, mesh, id);
    // Cut points in the traffic through the proxy, uniform over the first 98% of the stream's
    // size. Every stored byte passes the proxy at least once, so all cuts land before the stream
    // can end; resent bytes count too, so cuts also land in the middle of resends.
    const random = seeded(seed);
    const points = Array.from({ length: cuts }, () => random() * size * 0.98).sort((a, b) => a - b);
    const base = proxy.bytes.up;
    let made = 0;
    let pairsCut = 0;
    const allCut = new Promise<void>((resolve) =>
      proxy.onBytes(({ up }) => {
        if (made < cuts && up - base >= points[made]!) {
          pairsCut += proxy.cutAll();
          if (++made === cuts) resolve();
        }
      }),
    );
    await within(allCut, 60_000, `${cuts} cuts`).catch((error: Error) => {
      throw new Error(`${error.message}: made ${made}, seed ${seed}`);
    });
    proxy.onBytes(null);
    await until(id, ["Succeeded", "Failed", "Canceled"]);
    const followed = await within(follower.done, 60_000, "the follower to finish");
    const seconds = (Date.now() - started) / 1000;
    console.log(`faults: 50 MiB with ${made} cuts (${pairsCut} connections cut) took ${seconds.toFixed(1)} s`);

    const record = await unit(id);
    expect(record.state).toBe("Succeeded");
    // The cuts hit the unit's own data link, not just the follower and the control link: cut
    // points land in bytes the data link carries, so nearly every cut drops it.
    const relinks = agent
      .logs()
      .split("\n")
      .filter((line) => line.includes('"unit:link-lost"') && line.includes(id)).length;
    expect(relinks).toBeGreaterThanOrEqual(cuts / 2);
    const mine = await readFile(written);
    expect(mine.byteLength).toBe(size);
    // Exactly the size stored: a resent frame appended twice would make it larger.
    expect(record.stdoutSize).toBe(size);
    expect(followed.stderr).toBe("");
    expect(followed.code).toBe(0);
    expect(followed.bytes).toBe(size);
    expect(followed.sha256).toBe(sha256(mine));
    expect(sha256(Buffer.from(await fetchResults(broker().url, broker().token, mesh, id)))).toBe(sha256(mine));

    // A plain read (no -f) cut mid-body resumes from its offset too, rather than end short.
    const downBase = proxy.bytes.down;
    const readCuts = [0.2, 0.5, 0.8].map((f) => f * size);
    proxy.onBytes(({ down }) => {
      if (readCuts.length > 0 && down - downBase >= readCuts[0]!) {
        readCuts.shift();
        proxy.cutAll();
      }
    });
    const read = await within(
      meshctl(proxy.url, broker().token, mesh, ["work", "results", id]).done,
      60_000,
      "the plain read",
    );
    proxy.onBytes(null);
    expect(read.code).toBe(0);
    expect(read.bytes).toBe(size);
    expect(read.sha256).toBe(sha256(mine));
    expect(readCuts).toEqual([]);
  });

  it("50 link cuts while the agent pulls a 20 MiB payload: the work command reads exactly the bytes sent", {
    timeout: 90_000,
  }, async () => {
    const size = 20 * MiB;
    const cuts = 50;
    const payload = randomBytes(size);
    const random = seeded(seed + 1);
    const points = Array.from({ length: cuts }, () => random() * size * 0.98).sort((a, b) => a - b);
    const base = proxy.bytes.down;
    let made = 0;
    const allCut = new Promise<void>((resolve) =>
      proxy.onBytes(({ down }) => {
        if (made < cuts && down - base >= points[made]!) {
          proxy.cutAll();
          if (++made === cuts) resolve();
        }
      }),
    );
    const started = Date.now();
    const reply = await api<UnitRecord>(mesh, "POST", "/units?worktype=sh&param.params=%27sha256sum%27", {
      body: payload,
    });
    expect(reply.status).toBe(201);
    const { id } = reply.body;
    await within(allCut, 60_000, `${cuts} cuts`).catch((error: Error) => {
      throw new Error(`${error.message}: made ${made}, seed ${seed}`);
    });
    proxy.onBytes(null);
    await until(id, ["Succeeded", "Failed", "Canceled"]);
    console.log(`faults: 20 MiB payload with ${made} cuts took ${((Date.now() - started) / 1000).toFixed(1)} s`);
    expect((await unit(id)).state).toBe("Succeeded");
    expect((await api(mesh, "GET", `/units/${id}/results`)).body).toBe(`${sha256(payload)}  -\n`);
  });

  it("a cancel issued while the agent's link is down reaches the unit after it reconnects", {
    timeout: 60_000,
  }, async () => {
    const { id } = await submit(`trap "echo got-int; exit 130" INT; echo ready; while :; do sleep 0.1; done`);
    await until(id, ["Running"]);
    await waitFor(
      async () => (await api(mesh, "GET", `/units/${id}/results`)).body === "ready\n",
      "the trap to be set",
    );
    proxy.down();
    const canceled = await api<UnitRecord>(mesh, "POST", `/units/${id}/cancel`);
    expect(canceled.status).toBe(200);
    // While the link is down nothing can reach the unit: it keeps running and has not trapped.
    await sleep(500);
    const during = await unit(id);
    expect(during.state).toBe("Running");
    expect((await api(mesh, "GET", `/units/${id}/results`)).body).toBe("ready\n");
    proxy.up();
    await until(id, ["Canceled", "Failed", "Succeeded"], 30_000);
    const record = await unit(id);
    expect(record.state).toBe("Canceled");
    expect((await api(mesh, "GET", `/units/${id}/results`)).body).toBe("ready\ngot-int\n");
  });

  it("a link that goes silent, with no RST or FIN, is dropped by keepalive and the unit completes", {
    timeout: 90_000,
  }, async () => {
    const written = join(dir, "silent-written.bin");
    const { id } = await submit(`for i in $(seq 40); do head -c 65536 /dev/urandom; sleep 0.1; done | tee ${written}`);
    await waitFor(async () => (await unit(id)).stdoutSize > 0, "the first results");
    const frozenAt = Date.now();
    proxy.freeze();
    await until(id, ["Succeeded", "Failed", "Canceled"], 60_000);
    console.log(
      `faults: a silent link was replaced and the unit finished ${((Date.now() - frozenAt) / 1000).toFixed(1)} s after the freeze`,
    );
    const record = await unit(id);
    expect(record.state).toBe("Succeeded");
    const mine = await readFile(written);
    expect(record.stdoutSize).toBe(mine.byteLength);
    expect(sha256(Buffer.from(await fetchResults(broker().url, broker().token, mesh, id)))).toBe(sha256(mine));
  });

  it("a handshake the broker never answers is given up and retried, and the unit runs", {
    timeout: 60_000,
  }, async () => {
    proxy.blackhole(true);
    const heldBefore = proxy.held;
    const { id } = await submit("echo through");
    await waitFor(() => proxy.held > heldBefore, "the unit's data link to dial into the blackhole");
    proxy.blackhole(false);
    await until(id, ["Succeeded", "Failed", "Canceled"], 45_000);
    expect((await unit(id)).state).toBe("Succeeded");
    expect((await api(mesh, "GET", `/units/${id}/results`)).body).toBe("through\n");
  });

  it("a follower that never reads stalls neither the agent nor another follower", { timeout: 60_000 }, async () => {
    const size = 20 * MiB;
    const written = join(dir, "slow-written.bin");
    // Throttled so the unit is still writing while both followers are attached.
    const { id } = await submit(
      `for i in $(seq 20); do head -c ${MiB} /dev/urandom; sleep 0.05; done | tee ${written}`,
    );
    const { url, token } = broker();
    const stuck = await request(`${url}/v1/meshes/${mesh}/units/${id}/results?follow=1`, {
      headers: { authorization: `Bearer ${token}` },
    });
    cleanup.push(() => void stuck.body.destroy());
    expect(stuck.statusCode).toBe(200);
    stuck.body.pause();
    const reader = follow(url, token, mesh, id);
    await until(id, ["Succeeded", "Failed", "Canceled"]);
    const record = await unit(id);
    expect(record.state).toBe("Succeeded");
    expect(record.stdoutSize).toBe(size);
    const followed = await within(reader.done, 30_000, "the reading follower to finish");
    const mine = await readFile(written);
    expect(followed.code).toBe(0);
    expect(followed.bytes).toBe(size);
    expect(followed.sha256).toBe(sha256(mine));
    // Once it reads again, the slow follower gets every byte too.
    expect(sha256(Buffer.from(await within(stuck.body.arrayBuffer(), 30_000, "the slow follower to catch up")))).toBe(
      sha256(mine),
    );
  });

  it("status polled in a tight loop while a running unit is released never answers unknown", {
    timeout: 60_000,
  }, async () => {
    const { id } = await submit("while :; do sleep 0.1; done");
    await until(id, ["Running"]);
    type Answer = { status: number; state: string };
    const status = async (): Promise<Answer> => {
      const reply = await api<UnitRecord & { error?: { code: string } }>(mesh, "GET", `/units/${id}`);
      return { status: reply.status, state: reply.body.state ?? reply.body.error?.code ?? "?" };
    };
    // The mesh-wide index must not lose the unit either, even for a moment.
    const listed = async (): Promise<Answer> => {
      const reply = await api<UnitSummary[]>(mesh, "GET", "/units");
      return { status: reply.status, state: reply.body.find((u) => u.id === id)?.state ?? "missing" };
    };
    const probes = [status, status, status, listed];
    const seen: Answer[][] = probes.map(() => []);
    let stop = false;
    const pollers = probes.map(async (probe, i) => {
      while (!stop) seen[i]!.push(await probe());
    });
    await waitFor(() => seen.every((a) => a.length >= 10), "every poller to see the running unit");
    const reply = await api<UnitRecord>(mesh, "DELETE", `/units/${id}`);
    const releasedAt = Math.min(...seen.map((a) => a.length));
    expect(reply.status).toBe(200);
    expect(reply.body.state).toBe("Released");
    await waitFor(() => seen.every((a) => a.length >= releasedAt + 20), "polls after the release");
    stop = true;
    await Promise.all(pollers);
    for (const answers of seen) {
      expect(answers.filter((a) => a.status !== 200)).toEqual([]);
      // Each poller sees Running, then Released, and never anything else or back again.
      const states = answers.map((a) => a.state).filter((s, i, all) => s !== all[i - 1]);
      expect(states).toEqual(["Running", "Released"]);
    }
  });
});

describe("broker restart", () => {
  let own: LocalBroker | undefined;
  let child: ChildProcess | undefined;
  afterAll(async () => {
    child?.kill("SIGKILL");
    await own?.stop();
  });

  it("a unit running across a broker restart completes byte-exact, and a follower from before resumes", {
    timeout: 120_000,
  }, async () => {
    const ownDir = await tempDir("mesh-faults-restart-");
    const token = "restart-token";
    const meshId = "restart";
    const port = await freePort();
    const start = () =>
      startBroker({ stateDir: join(ownDir, "state"), token, logFile: join(ownDir, "broker.log"), port });
    own = await start();
    const url = own.url;
    const call = async <T>(method: "GET" | "POST", path: string, body?: string) => {
      const response = await request(`${url}/v1/meshes/${meshId}${path}`, {
        method,
        headers: { authorization: `Bearer ${token}` },
        body: body ?? null,
      });
      return { status: response.statusCode, body: (await response.body.json()) as T };
    };
    await writeFile(join(ownDir, "agent.yml"), SH);
    child = spawn(
      process.execPath,
      agentArgv({
        broker: url,
        token,
        mesh: meshId,
        nodeId: "survivor",
        config: join(ownDir, "agent.yml"),
        workDir: join(ownDir, "work"),
      }),
      { stdio: "ignore" },
    );
    await waitFor(
      async () =>
        (await call<MeshStatus>("GET", "/status")).body.nodes.some((n) => n.nodeId === "survivor" && n.connected),
      "the node to connect",
    );

    const written = join(ownDir, "written.bin");
    // About 8 MiB over about 8 s: the restart falls in the middle, and output keeps coming after it.
    const script = `for i in $(seq 64); do head -c 131072 /dev/urandom; sleep 0.125; done | tee ${written}`;
    const created = await call<UnitRecord>(
      "POST",
      `/units?worktype=sh&param.params=${encodeURIComponent(`'${script}'`)}`,
      "",
    );
    expect(created.status).toBe(201);
    const id = created.body.id;
    const status = async () => (await call<UnitRecord>("GET", `/units/${id}`)).body;
    await waitFor(async () => (await status()).stdoutSize > 0, "the first results to be stored");
    const follower = follow(url, token, meshId, id);
    await waitFor(async () => (await status()).stdoutSize > MiB, "a MiB to be stored");

    await own.stop();
    const writtenAtStop = (await readFile(written)).byteLength;
    own = await start();
    await waitFor(async () => isTerminal((await status()).state), `unit ${id} to finish after the restart`, 60_000);
    const record = await status();
    const mine = await readFile(written);
    // The restart really was mid-unit: the command was still writing while the broker was away.
    expect(writtenAtStop).toBeLessThan(mine.byteLength);
    expect(record.state).toBe("Succeeded");
    expect(record.stdoutSize).toBe(mine.byteLength);
    const followed = await within(follower.done, 60_000, "the follower to finish");
    // The restart takes seconds: the follower may say once that it is riding it out, nothing else.
    expect(followed.stderr).toMatch(/^(meshctl: broker unreachable \(.*\); retrying for up to 15m\n)?$/);
    expect(followed.code).toBe(0);
    expect(followed.bytes).toBe(mine.byteLength);
    expect(followed.sha256).toBe(sha256(mine));
  });
});

async function fetchResults(url: string, token: string, meshId: string, id: string): Promise<ArrayBuffer> {
  const response = await request(`${url}/v1/meshes/${meshId}/units/${id}/results`, {
    headers: { authorization: `Bearer ${token}` },
  });
  return response.body.arrayBuffer();
}
