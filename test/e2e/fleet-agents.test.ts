/** Fleet operations that involve the agent: health checks through the node, one-shot and idle agents (issue 17). */
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import type { HealthReport } from "../../shared/health.js";
import type { MeshStatus, NodeStatus, UnitRecord } from "../../shared/unit.js";
import {
  type RunningAgent,
  api,
  newMesh,
  sh,
  startAgent,
  submitScript,
  tempDir,
  waitFinished,
  waitFor,
} from "./harness.js";

const agents: RunningAgent[] = [];
const CONFIG = `- work-command: {worktype: sh, command: sh, params: "-c", allowruntimeparams: true}
- work-command: {worktype: ansible-runner, command: ansible-runner, params: worker}
`;
const SH = `- work-command: {worktype: sh, command: sh, params: "-c", allowruntimeparams: true}\n`;

afterAll(async () => {
  await Promise.all(agents.map((a) => a.stop()));
});

const nodeOf = async (mesh: string, id: string) =>
  (await api<MeshStatus>(mesh, "GET", "/status")).body.nodes.find((n) => n.nodeId === id);
const exited = (agent: RunningAgent) =>
  new Promise<number | null>((resolve) => {
    if (agent.process.exitCode !== null) resolve(agent.process.exitCode);
    else agent.process.once("exit", (code) => resolve(code));
  });

describe("health check", () => {
  const mesh = newMesh();

  it("fails on a node whose PATH lacks ansible-runner, which dispatch then passes over until a check passes", async () => {
    // The sick node's PATH holds only sh: its ansible-runner work type cannot run.
    const bin = join(await tempDir(), "bin");
    await mkdir(bin);
    await sh(mesh, `ln -s "$(command -v sh)" ${bin}/sh`);
    agents.push(await startAgent({ mesh, nodeId: "a-sick", config: CONFIG, env: { PATH: bin } }));
    agents.push(await startAgent({ mesh, nodeId: "b-well", config: CONFIG }));

    const sick = await sh(mesh, "$MESHCTL node check a-sick");
    expect(sick.code).toBe(1);
    const report = JSON.parse(sick.stdout.toString()) as HealthReport & { node: string };
    expect(report).toMatchObject({ node: "a-sick", ok: false });
    expect(report.checks.find((c) => c.name === "ansible-runner")).toEqual({
      name: "ansible-runner",
      ok: false,
      detail: "--version: not found on PATH",
    });
    expect(report.checks.find((c) => c.name === "clock")?.ok).toBe(true);
    expect(report.checks.find((c) => c.name === "disk")?.ok).toBe(true);
    const status: NodeStatus | undefined = await nodeOf(mesh, "a-sick");
    expect(status?.hold).toBe("health check failed: ansible-runner: --version: not found on PATH");
    expect(status?.health?.ok).toBe(false);

    // Equal load, and a-sick sorts first: only the failed check sends the unit to b-well.
    const unit = await submitScript(mesh, "echo ok");
    expect((await waitFinished(mesh, unit.id)).node).toBe("b-well");

    const well = await sh(mesh, "$MESHCTL node check b-well");
    expect(well.code).toBe(0);
    expect(JSON.parse(well.stdout.toString())).toMatchObject({ node: "b-well", ok: true });
    expect((await nodeOf(mesh, "b-well"))?.hold).toBeNull();
    const text = (await sh(mesh, "$MESHCTL status")).stdout.toString();
    expect(text).toContain("node a-sick takes no new units: health check failed");
  });

  it("refuses a check of a node that is not connected", async () => {
    const reply = await api<{ error: { code: string } }>(mesh, "POST", "/nodes/nobody/check");
    expect(reply.status).toBe(409);
    expect(reply.body.error.code).toBe("node_not_connected");
  });
});

describe("one-shot and ephemeral agents", () => {
  it("--max-units 1: runs one unit, tells the broker it leaves, exits 0; its node shows as left, and the next unit waits for another", async () => {
    const mesh = newMesh();
    const once = await startAgent({ mesh, nodeId: "once", config: SH, capacity: 2, extraArgs: ["--max-units", "1"] });
    agents.push(once);
    const gone = exited(once);
    const first = await submitScript(mesh, "sleep 0.5; echo first");
    const second = await submitScript(mesh, "echo second");
    expect(await waitFinished(mesh, first.id)).toMatchObject({ state: "Succeeded", node: "once" });
    expect(await gone).toBe(0);
    expect(once.logs()).toContain("agent:left");
    await waitFor(async () => (await nodeOf(mesh, "once"))?.connected === false, "the node to disconnect");
    expect(await nodeOf(mesh, "once")).toMatchObject({ connected: false, left: true, lost: false, unreachable: false });
    expect((await api<UnitRecord>(mesh, "GET", `/units/${second.id}`)).body).toMatchObject({
      state: "Pending",
      node: null,
    });
    // The unit list agrees: an assignment the leaving agent refused does not stay "assigned to once".
    const listed = (await api<{ id: string; node: string | null; detail: string }[]>(mesh, "GET", "/units")).body.find(
      (u) => u.id === second.id,
    );
    expect(listed).toMatchObject({ node: null });
    expect(listed?.detail).not.toMatch(/^assigned to/);
    const events = await api<{ events: { kind: string; nodeId?: string; change?: string }[] }>(
      mesh,
      "GET",
      "/events?limit=1000",
    );
    const changes = events.body.events.filter((e) => e.kind === "node" && e.nodeId === "once").map((e) => e.change);
    // A join reconnects once with the credential it was issued (joined, left, joined): read from the last join.
    expect(changes.slice(changes.lastIndexOf("joined"))).toEqual(["joined", "leaving", "left"]);
    expect((await sh(mesh, "$MESHCTL status")).stdout.toString()).toMatch(/once\s+left/);

    agents.push(await startAgent({ mesh, nodeId: "next", config: SH }));
    expect(await waitFinished(mesh, second.id)).toMatchObject({ state: "Succeeded", node: "next" });
  });

  it("--idle-exit: leaves after that long without a unit; --max-uptime bounds a busy one", async () => {
    const mesh = newMesh();
    const idle = await startAgent({ mesh, nodeId: "idle", config: SH, extraArgs: ["--idle-exit", "5s"] });
    agents.push(idle);
    expect(await exited(idle)).toBe(0);
    expect(await nodeOf(mesh, "idle")).toMatchObject({ connected: false, left: true, lost: false });

    const busy = await startAgent({ mesh, nodeId: "busy", config: SH, extraArgs: ["--max-uptime", "8s"] });
    agents.push(busy);
    const long = await submitScript(mesh, "sleep 9; echo done");
    expect(await exited(busy)).toBe(0);
    // It drained: the unit it held finished before it left.
    expect(await waitFinished(mesh, long.id)).toMatchObject({ state: "Succeeded", node: "busy" });
    expect((await api(mesh, "GET", `/units/${long.id}/results`)).body).toBe("done\n");
  });
});
