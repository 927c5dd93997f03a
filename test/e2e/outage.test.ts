/**
 * Outages longer than the lease, on a broker of this file's own with short clocks (lease 2 s,
 * lost after 40 s, which is longer than an agent's reconnect backoff after a long outage, 30 s at
 * most): a broker kept down past both while a real ansible-runner unit runs is no node's silence;
 * a node silent past its unit's own lost-after (6 s) returns with the finished unit and has its
 * results and real exit stored, nothing thrown away from its spool before that.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { cp, mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { request } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type LocalBroker, ROOT, freePort, startBroker } from "../../scripts/local-broker.js";
import { isTerminal } from "../../shared/states.js";
import type { MeshStatus, UnitRecord } from "../../shared/unit.js";
import { MESHCTL_BIN, agentArgv, readReply, tempDir, waitFor } from "./harness.js";

const token = "outage-token";
const LEASE_MS = 2_000;
const LOST_AFTER_MS = 40_000;
const UNIT_LOST_AFTER = "6s";
const CONFIG = `
- work-command: {worktype: sh, command: sh, params: "-c", allowruntimeparams: true}
- work-command: {worktype: ansible-runner, command: ansible-runner, params: worker}
- work-command: {worktype: stream-cat, command: cat, streamingpayload: true}
`;
// Long enough that the broker is killed mid-play and stays away while the play ends.
const PLAYBOOK = `- hosts: all
  gather_facts: false
  tasks:
    - name: before the outage
      ansible.builtin.debug:
        msg: before
    - name: through the outage
      ansible.builtin.command: sleep 6
    - name: after the outage
      ansible.builtin.debug:
        msg: "{{ item }}"
      loop: [one, two, three]
`;

let broker: LocalBroker;
let dir: string;
let port: number;
const children: ChildProcess[] = [];

const start = () =>
  startBroker({
    stateDir: join(dir, "state"),
    token,
    logFile: join(dir, "broker.log"),
    port,
    vars: { PING_INTERVAL_MS: "500", NODE_LEASE_MS: String(LEASE_MS), NODE_LOST_AFTER_MS: String(LOST_AFTER_MS) },
  });

beforeAll(async () => {
  dir = await tempDir("mesh-outage-");
  await writeFile(join(dir, "agent.yml"), CONFIG);
  port = await freePort();
  broker = await start();
}, 90_000);

afterAll(async () => {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  await broker?.stop();
});

async function call<T>(mesh: string, method: "GET" | "POST", path: string): Promise<{ status: number; body: T }> {
  const response = await request(`${broker.url}/v1/meshes/${mesh}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}` },
    body: method === "POST" ? "" : null,
  });
  return readReply<T>(response);
}

async function results(mesh: string, id: string): Promise<Buffer> {
  const response = await request(`${broker.url}/v1/meshes/${mesh}/units/${id}/results`, {
    headers: { authorization: `Bearer ${token}` },
  });
  return Buffer.from(await response.body.arrayBuffer());
}

async function agent(mesh: string, nodeId: string): Promise<{ child: ChildProcess; workDir: string }> {
  const workDir = join(dir, `work-${mesh}-${nodeId}`);
  const child = spawn(
    process.execPath,
    agentArgv({ broker: broker.url, token, mesh, nodeId, config: join(dir, "agent.yml"), workDir }),
    { stdio: "ignore" },
  );
  children.push(child);
  await waitFor(
    async () =>
      (await call<MeshStatus>(mesh, "GET", "/status")).body.nodes.some((n) => n.nodeId === nodeId && n.connected),
    `node ${nodeId} to connect`,
  );
  return { child, workDir };
}

const unit = async (mesh: string, id: string) => (await call<UnitRecord>(mesh, "GET", `/units/${id}`)).body;

describe("outages longer than the lease", () => {
  it("a streaming upload cut by a broker crash fails the unit started on its first bytes once the broker is back, and its command is stopped", {
    timeout: 120_000,
  }, async () => {
    const mesh = "upload-cut";
    const { workDir } = await agent(mesh, "early");
    // The producer writes a little, then stays: the unit starts on those bytes (streamingpayload).
    const producer = spawn(
      "bash",
      ["-c", `{ echo first-bytes; sleep 600; } | ${process.execPath} ${MESHCTL_BIN} work submit stream-cat -p -`],
      {
        env: { ...process.env, MESH_BROKER: broker.url, MESH_TOKEN: token, MESH_ID: mesh },
        stdio: "ignore",
        detached: true,
      },
    );
    children.push(producer);
    try {
      let id = "";
      await waitFor(async () => {
        id = (await call<{ id: string }[]>(mesh, "GET", "/units")).body[0]?.id ?? "";
        return id !== "" && (await results(mesh, id)).toString() === "first-bytes\n";
      }, "the command to run on the first bytes");
      expect((await unit(mesh, id)).state).toBe("Running");
      process.kill(-broker.process.pid!, "SIGKILL");
      await broker.stop();
      broker = await start();
      await waitFor(async () => isTerminal((await unit(mesh, id)).state), "the unit to end after the restart", 60_000);
      const record = await unit(mesh, id);
      expect(record.state).toBe("Failed");
      // The agent's report of the stopped command may already be in as a late exit (appended).
      expect(record.detail).toMatch(
        /^payload_incomplete: the payload's upload was cut by a broker restart($|; node \S+ reported later: )/,
      );
      // The agent stopped cat (which would have waited for stdin for ever) and recorded how it ended.
      await waitFor(
        () => existsSync(join(workDir, "units", id, "exit")) || !existsSync(join(workDir, "units", id)),
        "the command to be stopped",
        30_000,
      );
    } finally {
      process.kill(-producer.pid!, "SIGKILL");
    }
  });

  it("a broker down past lease + lost-after while ansible-runner runs: the unit succeeds byte-exact and the follower exits 0", {
    timeout: 240_000,
  }, async () => {
    const mesh = "broker-down";
    const { workDir } = await agent(mesh, "steady");
    const project = join(dir, "play");
    await mkdir(join(project, "project"), { recursive: true });
    await cp(join(ROOT, "test/fixtures/slow/inventory"), join(project, "inventory"), { recursive: true });
    await writeFile(join(project, "project", "site.yml"), PLAYBOOK);
    const follower = spawn(
      "bash",
      [
        "-o",
        "pipefail",
        "-c",
        `ansible-runner transmit ${project} -p site.yml | ${process.execPath} ${MESHCTL_BIN} work submit ansible-runner -f -p - > ${dir}/client.out`,
      ],
      {
        env: { ...process.env, MESH_BROKER: broker.url, MESH_TOKEN: token, MESH_ID: mesh },
        stdio: ["ignore", "ignore", "pipe"],
      },
    );
    children.push(follower);
    let stderr = "";
    follower.stderr!.on("data", (d) => (stderr += d));
    const followed = new Promise<number>((resolve) => follower.once("exit", (code) => resolve(code ?? 1)));

    let id = "";
    await waitFor(async () => {
      const units = (await call<{ id: string }[]>(mesh, "GET", "/units")).body;
      id = units[0]?.id ?? "";
      return id !== "" && (await results(mesh, id)).includes("through the outage");
    }, "the play to reach its long task");

    // Killed, not stopped: no close handler, no goodbye to any socket.
    process.kill(-broker.process.pid!, "SIGKILL");
    await broker.stop();
    const downAt = Date.now();
    const spool = join(workDir, "units", id);
    // The play ends while the broker is away; the agent can report nothing, so its spool holds all.
    await waitFor(() => existsSync(join(spool, "exit")), "the play to end while the broker is down", 60_000);
    const away = LEASE_MS + LOST_AFTER_MS + 3_000;
    await new Promise((r) => setTimeout(r, Math.max(0, downAt + away - Date.now())));
    await cp(join(spool, "stdout"), join(dir, "spool-copy"));
    expect(JSON.parse(await readFile(join(spool, "exit"), "utf8"))).toEqual({ code: 0, signal: null });
    broker = await start();
    console.log(`outage: broker down ${((Date.now() - downAt) / 1000).toFixed(1)} s`);

    await waitFor(async () => isTerminal((await unit(mesh, id)).state), "the unit to end after the restart", 90_000);
    const record = await unit(mesh, id);
    expect(record).toMatchObject({ state: "Succeeded", exitCode: 0, lateExit: null });
    const written = await readFile(join(dir, "spool-copy"));
    expect(written.includes("ok: [localhost] => (item=three)")).toBe(true);
    expect((await results(mesh, id)).equals(written)).toBe(true);
    expect(await followed).toBe(0);
    expect((await readFile(join(dir, "client.out"))).equals(written)).toBe(true);
    expect(stderr).toMatch(/^(meshctl: broker unreachable \(.*\); retrying for up to 15m\n)?$/);
    // Reported and acknowledged: now, and only now, the agent lets go of it.
    await waitFor(() => !existsSync(spool), "the agent to drop the spool");
  });

  it("a node silent past its unit's lost-after fails the unit; back with the unit finished, its remaining results and real exit are stored", {
    timeout: 120_000,
  }, async () => {
    const mesh = "node-away";
    const { child, workDir } = await agent(mesh, "sleeper");
    const written = join(dir, "away-written");
    const script = `(echo before; sleep 2; seq 1 20000; echo after) | tee ${written}`;
    const created = await call<UnitRecord>(
      mesh,
      "POST",
      `/units?worktype=sh&lostAfter=${UNIT_LOST_AFTER}&param.params=${encodeURIComponent(`'${script}'`)}`,
    );
    expect(created.status).toBe(201);
    const { id } = created.body;
    expect(created.body.lostAfterMs).toBe(6_000);
    await waitFor(async () => (await results(mesh, id)).toString() === "before\n", "the first output");
    child.kill("SIGSTOP");
    try {
      await waitFor(
        async () => (await unit(mesh, id)).nodeUnreachableSince !== null,
        "the unit to see its node unreachable",
        20_000,
      );
      const marked = await unit(mesh, id);
      expect(marked.state).toBe("Running");
      expect(marked.detail).toMatch(/^node sleeper unreachable since /);
      await waitFor(async () => (await unit(mesh, id)).state === "Failed", "the unit to fail node lost", 30_000);
      const judged = await unit(mesh, id);
      expect(judged.detail).toMatch(/^node lost: no word from node sleeper for \d+ s$/);
      expect(judged.lateExit).toBeNull();
      // The command ended meanwhile; the frozen agent could not report it, and deleted nothing.
      const spool = join(workDir, "units", id);
      await waitFor(() => existsSync(join(spool, "exit")), "the command to end while its agent is frozen");
      expect(existsSync(join(spool, "stdout"))).toBe(true);
    } finally {
      child.kill("SIGCONT");
    }
    await waitFor(async () => (await unit(mesh, id)).lateExit !== null, "the late exit to be stored", 30_000);
    const record = await unit(mesh, id);
    const mine = await readFile(written);
    expect(record.state).toBe("Failed");
    expect(record.lateExit).toMatchObject({
      exitCode: 0,
      signal: null,
      detail: "exit status 0",
      lateBytes: mine.byteLength - "before\n".length,
    });
    expect(record.detail).toMatch(
      new RegExp(
        `^node lost: no word from node sleeper for \\d+ s; node sleeper reported later: exit status 0 \\(${mine.byteLength - 7} more bytes of results stored\\)$`,
      ),
    );
    expect(record.stdoutSize).toBe(mine.byteLength);
    expect((await results(mesh, id)).equals(mine)).toBe(true);
    await waitFor(
      () => !existsSync(join(workDir, "units", id)),
      "the agent to drop the spool once the broker holds it all",
    );

    // One unreachable event for this outage (not yet silent past the broker's lost-after: no node
    // `lost`, only the unit's own verdict), and the late exit is announced.
    const events = (
      await call<{ events: { kind: string; nodeId?: string; change?: string; id?: string; detail?: string }[] }>(
        mesh,
        "GET",
        "/events?after=0",
      )
    ).body.events;
    const changes = events.filter((e) => e.kind === "node" && e.nodeId === "sleeper").map((e) => e.change);
    expect(changes.filter((c) => c === "unreachable")).toHaveLength(1);
    expect(changes.filter((c) => c === "lost")).toHaveLength(0);
    expect(
      events.some((e) => e.kind === "unit" && e.id === id && e.detail?.includes("reported later: exit status 0")),
    ).toBe(true);
    // Back: connected, no longer unreachable.
    await waitFor(async () => {
      const node = (await call<MeshStatus>(mesh, "GET", "/status")).body.nodes.find((n) => n.nodeId === "sleeper");
      return node?.connected === true && !node.unreachable && !node.lost;
    }, "the node to be connected again");
  });
});
