/** Fleet operations against real agents: tag selectors, priorities, pause/resume, metrics (issue 17). */
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import type { MeshStatus, UnitRecord } from "../../shared/unit.js";
import { parsePrometheusText, sampleValue } from "../unit/prometheus-parser.js";
import { type RunningAgent, api, newMesh, sh, startAgent, tempDir, waitFinished, waitFor } from "./harness.js";

const mesh = newMesh();
const agents: RunningAgent[] = [];
const SH = `- work-command: {worktype: sh, command: sh, params: "-c", allowruntimeparams: true}\n`;

afterAll(async () => {
  await Promise.all(agents.map((a) => a.stop()));
});

async function submit(script: string, query = ""): Promise<UnitRecord> {
  const params = encodeURIComponent(`'${script}'`);
  const reply = await api<UnitRecord>(mesh, "POST", `/units?worktype=sh&param.params=${params}${query}`, { body: "" });
  if (reply.status !== 201) throw new Error(`submit: HTTP ${reply.status}: ${JSON.stringify(reply.body)}`);
  return reply.body;
}

const unit = async (id: string) => (await api<UnitRecord>(mesh, "GET", `/units/${id}`)).body;
const status = async () => (await api<MeshStatus>(mesh, "GET", "/status")).body;
const metrics = async () => {
  const reply = await api<string>(mesh, "GET", "/metrics");
  expect(reply.status).toBe(200);
  return parsePrometheusText(reply.body);
};

describe("fleet operations", () => {
  it("routes by tags: each unit runs on the node whose tags match, --node and tags combine", async () => {
    agents.push(
      await startAgent({
        mesh,
        nodeId: "eu-1",
        config: SH,
        capacity: 2,
        extraArgs: ["--tag", "zone=eu", "--tag", "gpu=a100"],
      }),
    );
    agents.push(await startAgent({ mesh, nodeId: "us-1", config: SH, capacity: 2, extraArgs: ["--tag", "zone=us"] }));
    const cli = await sh(
      mesh,
      `$MESHCTL work submit sh --tag zone=us --priority 3 -a "params='echo on-us'" -p /dev/null`,
    );
    expect(cli.code).toBe(0);
    const submitted = JSON.parse(cli.stdout.toString()) as UnitRecord;
    expect(submitted).toMatchObject({ tags: ["zone=us"], priority: 3 });
    expect(await waitFinished(mesh, submitted.id)).toMatchObject({ state: "Succeeded", node: "us-1" });
    expect((await api(mesh, "GET", `/units/${submitted.id}/results`)).body).toBe("on-us\n");
    const byGpu = await submit("echo gpu", "&tag=gpu");
    const both = await submit("echo both", "&tag=zone%3Deu&tag=gpu%3Da100&node=eu-1");
    expect(byGpu.tags).toEqual(["gpu"]);
    expect((await waitFinished(mesh, byGpu.id)).node).toBe("eu-1");
    expect(await waitFinished(mesh, both.id)).toMatchObject({
      state: "Succeeded",
      node: "eu-1",
      tags: ["gpu=a100", "zone=eu"],
    });
    const list = (await sh(mesh, "$MESHCTL work list")).stdout.toString();
    expect(JSON.parse(list).find((u: { id: string }) => u.id === both.id)).toMatchObject({
      tags: ["gpu=a100", "zone=eu"],
      priority: 0,
    });
  });

  it("refuses a unit no node could ever match, unless it has a ttl to wait for one", async () => {
    const refused = await api<{ error: { code: string; message: string } }>(
      mesh,
      "POST",
      "/units?worktype=sh&tag=zone%3Dmars",
      { body: "" },
    );
    expect(refused.status).toBe(400);
    expect(refused.body.error.code).toBe("no_matching_node");
    const mixed = await api<{ error: { code: string } }>(mesh, "POST", "/units?worktype=sh&tag=zone%3Deu&node=us-1", {
      body: "",
    });
    expect(mixed.body.error.code).toBe("no_matching_node");
    const bad = await api<{ error: { code: string } }>(mesh, "POST", "/units?worktype=sh&tag=a%3D1&tag=a%3D2", {
      body: "",
    });
    expect(bad.status).toBe(400);
    const waiting = await submit("echo mars", "&tag=zone%3Dmars&ttl=1m");
    await new Promise((r) => setTimeout(r, 300));
    expect(await unit(waiting.id)).toMatchObject({ state: "Pending", node: null });
    expect((await api(mesh, "POST", `/units/${waiting.id}/cancel`)).status).toBe(200);
  });

  it("a paused node finishes its running unit and takes no new ones until resumed; priorities order the queue", async () => {
    const gate = join(await tempDir(), "open");
    const held = await submit(`until [ -e ${gate} ]; do sleep 0.1; done; echo held`, "&node=us-1");
    await waitFor(async () => (await unit(held.id)).state === "Running", "the held unit to run");
    const paused = await sh(mesh, "$MESHCTL node pause us-1");
    expect(paused.code).toBe(0);
    expect((await status()).nodes.find((n) => n.nodeId === "us-1")).toMatchObject({ paused: true, hold: "paused" });
    expect((await sh(mesh, "$MESHCTL status")).stdout.toString()).toMatch(/us-1\s+connected, paused/);
    // Queued while paused: low first, high second; the high one must run first after resume.
    const low = await submit("echo low", "&tag=zone%3Dus&priority=-5");
    const high = await submit("echo high", "&tag=zone%3Dus&priority=7");
    await writeFile(gate, "");
    expect((await waitFinished(mesh, held.id)).state).toBe("Succeeded");
    await new Promise((r) => setTimeout(r, 500));
    expect((await unit(low.id)).state).toBe("Pending");
    expect((await unit(high.id)).state).toBe("Pending");
    const depth = await metrics();
    expect(sampleValue(depth, "mesh_queue_depth", { worktype: "sh", priority: "7" })).toBe(1);
    expect(sampleValue(depth, "mesh_queue_depth", { worktype: "sh", priority: "-5" })).toBe(1);
    expect(sampleValue(depth, "mesh_nodes_paused")).toBe(1);
    // One slot at a time, so the order is visible.
    const resumed = await sh(mesh, "$MESHCTL node resume us-1");
    expect(resumed.code).toBe(0);
    const [lo, hi] = [await waitFinished(mesh, low.id), await waitFinished(mesh, high.id)];
    expect([lo.node, hi.node]).toEqual(["us-1", "us-1"]);
    // Both placed by one dispatch: the mesh feed's assignment events show the order.
    const events = await api<{
      events: { seq: number; kind: string; id?: string; detail?: string; nodeId?: string; change?: string }[];
    }>(mesh, "GET", "/events?limit=1000");
    const assigned = (id: string) =>
      events.body.events.find((e) => e.kind === "unit" && e.id === id && e.detail === "assigned to us-1")?.seq ?? -1;
    expect(assigned(high.id)).toBeGreaterThan(0);
    expect(assigned(high.id)).toBeLessThan(assigned(low.id));
    const changes = events.body.events.filter((e) => e.kind === "node" && e.nodeId === "us-1").map((e) => e.change);
    expect(changes).toEqual(expect.arrayContaining(["paused", "resumed"]));
  });

  it("metrics: counts match the units run; histograms are well formed", async () => {
    const before = await metrics();
    const units = await Promise.all([submit("echo a; exit 0"), submit("exit 3"), submit("printf 12345")]);
    for (const u of units) await waitFinished(mesh, u.id);
    const after = await metrics();
    const delta = (name: string, labels: Record<string, string> = {}) =>
      sampleValue(after, name, labels) - sampleValue(before, name, labels);
    expect(delta("mesh_units_finished_total", { worktype: "sh", state: "Succeeded" })).toBe(2);
    expect(delta("mesh_units_finished_total", { worktype: "sh", state: "Failed" })).toBe(1);
    expect(delta("mesh_pickup_seconds_count", { worktype: "sh" })).toBe(3);
    expect(delta("mesh_run_seconds_count", { worktype: "sh" })).toBe(3);
    expect(delta("mesh_results_bytes_total", { worktype: "sh" })).toBe("a\n".length + "12345".length);
    expect(delta("mesh_events_total")).toBeGreaterThanOrEqual(9);
    expect(sampleValue(after, "mesh_nodes", { state: "connected" })).toBe(2);
    expect(sampleValue(after, "mesh_capacity_slots")).toBe(4);
    expect(sampleValue(after, "mesh_capacity_in_use")).toBe(0);
    // All units of this file so far: finished by state adds up to what the index holds as final.
    const all = (await api<{ state: string }[]>(mesh, "GET", "/units")).body;
    const finished = ["Succeeded", "Failed", "Canceled"].reduce(
      (sum, state) => sum + sampleValue(after, "mesh_units_finished_total", { worktype: "sh", state }),
      0,
    );
    expect(finished).toBe(all.filter((u) => ["Succeeded", "Failed", "Canceled"].includes(u.state)).length);
    const cli = await sh(mesh, "$MESHCTL metrics");
    expect(cli.code).toBe(0);
    expect(() => parsePrometheusText(cli.stdout.toString())).not.toThrow();
  });
});
