/**
 * The agent survives its own restart (kill -9) without losing a unit: a second agent on the same
 * work dir finds the spool, delivers what the first one had not, and reports the real outcome.
 */
import { existsSync } from "node:fs";
import { readFile, readlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { request } from "undici";
import { afterAll, describe, expect, it } from "vitest";
import type { UnitRecord } from "../../shared/unit.js";
import { type RunningAgent, api, broker, newMesh, shUnits, startAgent, tempDir, waitFor } from "./harness.js";

const mesh = newMesh();
const agents: RunningAgent[] = [];
const gates: string[] = [];
const SH = `- work-command: {worktype: sh, command: sh, params: "-c", allowruntimeparams: true}\n`;

afterAll(async () => {
  await Promise.all(agents.map((a) => a.stop()));
  // Opening every gate lets a unit left waiting by a failed test end by itself.
  await Promise.all(gates.map((g) => writeFile(g, "").catch(() => undefined)));
});

/** A path a unit's script waits for; the test "opens" it by creating the file. */
async function newGate(): Promise<string> {
  const gate = join(await tempDir("mesh-restart-"), "gate");
  gates.push(gate);
  return gate;
}

async function start(nodeId: string, workDir?: string): Promise<RunningAgent> {
  const agent = await startAgent({ mesh, nodeId, config: SH, ...(workDir ? { workDir } : {}) });
  agents.push(agent);
  return agent;
}

const { crash, submit, unit, until } = shUnits(mesh);

const ended = (id: string) => until(id, ["Succeeded", "Failed", "Canceled"]);

async function results(id: string): Promise<string> {
  const { url, token } = broker();
  const response = await request(`${url}/v1/meshes/${mesh}/units/${id}/results`, {
    headers: { authorization: `Bearer ${token}` },
  });
  return response.body.text();
}

/** What `seq from to` prints. */
const seq = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => `${from + i}\n`).join("");
const spool = (agent: RunningAgent, id: string, file = "") => join(agent.workDir, "units", id, file);
/** The PID of the unit's command, which leads its process group, once the agent recorded it. */
async function groupLeader(agent: RunningAgent, id: string): Promise<number> {
  return (await recorded(agent, id)).process;
}

/** The PIDs the agent recorded for the unit: its command and the supervisor that records its exit. */
async function recorded(agent: RunningAgent, id: string): Promise<{ process: number; supervisor: number }> {
  let pids = { process: 0, supervisor: 0 };
  await waitFor(async () => {
    const record = JSON.parse(await readFile(spool(agent, id, "unit.json"), "utf8")) as {
      process: { pid: number } | null;
      supervisor: { pid: number } | null;
    };
    pids = { process: record.process?.pid ?? 0, supervisor: record.supervisor?.pid ?? 0 };
    return pids.process !== 0;
  }, "the agent to record the unit's process");
  return pids;
}

/** No such process, or only a zombie nobody reaped yet. */
async function gone(pid: number): Promise<boolean> {
  const stat = await readFile(`/proc/${pid}/stat`, "utf8").catch(() => "");
  return stat === "" || stat.slice(stat.lastIndexOf(")") + 2).startsWith("Z");
}

/** A script that prints, waits until `gate` exists, then prints more. */
const gated = (gate: string, before: string, after: string) =>
  `${before}; while [ ! -e ${gate} ]; do sleep 0.05; done; ${after}`;

describe("agent restart", () => {
  it("a command that ends while the agent is down is reported with its real status and every byte", async () => {
    const gate = await newGate();
    const first = await start("phoenix-1");
    const id = await submit("phoenix-1", gated(gate, "seq 1 20000", "seq 20001 40000"));
    await until(id, ["Running"]);
    await waitFor(async () => (await unit(id)).stdoutSize > 0, "some results to reach the broker");
    await crash(first, "phoenix-1");
    await writeFile(gate, "");
    await waitFor(() => existsSync(spool(first, id, "exit")), "the command to finish while no agent runs");

    await start("phoenix-1", first.workDir);
    await ended(id);
    expect(await unit(id)).toMatchObject({ state: "Succeeded", detail: "exit status 0", exitCode: 0 });
    expect(await results(id)).toBe(seq(1, 40000));
    await waitFor(() => !existsSync(spool(first, id)), "the spool to be dropped once the unit is closed");
  });

  it("a unit whose process died with the agent fails 'agent restarted' with the results written before", async () => {
    const gate = await newGate();
    const first = await start("phoenix-2");
    const id = await submit("phoenix-2", gated(gate, "seq 1 5000", "echo unreachable"));
    await until(id, ["Running"]);
    await waitFor(
      async () => (await readFile(spool(first, id, "stdout"), "utf8")) === seq(1, 5000),
      "the command to write its output",
    );
    const { process: leader, supervisor } = await recorded(first, id);
    // The leader is this very unit's command: check before killing its group.
    expect(await readlink(`/proc/${leader}/cwd`)).toBe(spool(first, id, "work"));
    await crash(first, "phoenix-2");
    // Everything dies with the agent (a reboot, a cgroup kill): its supervisor first, so nothing records the end.
    process.kill(supervisor, "SIGKILL");
    await waitFor(() => gone(supervisor), "the supervisor to die");
    process.kill(-leader, "SIGKILL");
    await waitFor(() => gone(leader), "the unit's process group to die");

    await start("phoenix-2", first.workDir);
    await ended(id);
    const record = await unit(id);
    expect(record.state).toBe("Failed");
    expect(record.detail).toMatch(/^agent restarted/);
    expect(await results(id)).toBe(seq(1, 5000));
  });

  it("a command killed while the agent is down is reported killed: its supervisor outlives the agent", async () => {
    const gate = await newGate();
    const first = await start("phoenix-5");
    const id = await submit("phoenix-5", gated(gate, "echo started", "echo unreachable"));
    await until(id, ["Running"]);
    const leader = await groupLeader(first, id);
    await crash(first, "phoenix-5");
    process.kill(-leader, "SIGKILL");
    await waitFor(() => existsSync(spool(first, id, "exit")), "the supervisor to record the kill");

    await start("phoenix-5", first.workDir);
    await ended(id);
    expect(await unit(id)).toMatchObject({ state: "Failed", detail: "signal: killed" });
    expect(await results(id)).toBe("started\n");
  });

  it("a command still running when the agent comes back is adopted and ends with its real status", async () => {
    const gate = await newGate();
    const first = await start("phoenix-3");
    // 130: the exit file tells it from SIGINT, which a shell's $? cannot.
    const id = await submit("phoenix-3", gated(gate, "seq 1 3000", "seq 3001 6000; exit 130"));
    await until(id, ["Running"]);
    await groupLeader(first, id);
    await crash(first, "phoenix-3");

    const second = await start("phoenix-3", first.workDir);
    expect(second.logs()).toMatch(new RegExp(`"event":"unit:recovered","unit":"${id}","action":"adopt"`));
    expect((await unit(id)).state).toBe("Running");
    await writeFile(gate, "");
    await ended(id);
    expect(await unit(id)).toMatchObject({ state: "Failed", detail: "exit status 130", exitCode: 130 });
    expect(await results(id)).toBe(seq(1, 6000));
  });

  it("cancel reaches an adopted unit's process group", async () => {
    const gate = await newGate();
    const first = await start("phoenix-4");
    const id = await submit("phoenix-4", gated(gate, "echo started", "echo unreachable"));
    await until(id, ["Running"]);
    await waitFor(async () => (await results(id)) === "started\n", "the first line");
    const leader = await groupLeader(first, id);
    await crash(first, "phoenix-4");

    const second = await start("phoenix-4", first.workDir);
    expect(second.logs()).toMatch(new RegExp(`"unit":"${id}","action":"adopt"`));
    expect((await api<UnitRecord>(mesh, "POST", `/units/${id}/cancel`)).status).toBe(200);
    await ended(id);
    expect(await unit(id)).toMatchObject({ state: "Canceled", detail: "canceled" });
    expect(await results(id)).toBe("started\n");
    await waitFor(() => gone(leader), "the unit's process group to end");
  });
});
