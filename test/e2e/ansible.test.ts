/**
 * The acceptance story: `transmit | meshctl work submit -f | process` gives what the direct pipe
 * `transmit | worker | process` gives, with Debian's real ansible-runner on a real agent.
 */
import { readFile, readdir } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ROOT } from "../../scripts/local-broker.js";
import type { UnitRecord } from "../../shared/unit.js";
import { type RunningAgent, api, newMesh, sh, startAgent, tempDir, waitFor } from "./harness.js";

const mesh = newMesh();
let agent: RunningAgent;
let dir: string;

/** status, rc, and the job_events as "counter:event", from an `ansible-runner process` output dir. */
async function artifacts(out: string) {
  const base = join(out, "artifacts");
  const entries = await readdir(base, { withFileTypes: true });
  const nested = entries.find((e) => e.isDirectory() && e.name !== "job_events" && e.name !== "fact_cache");
  const root = entries.some((e) => e.name === "status") ? base : join(base, nested!.name);
  const events = await Promise.all(
    (await readdir(join(root, "job_events"))).map(async (f) => {
      const event = JSON.parse(await readFile(join(root, "job_events", f), "utf8")) as {
        counter: number;
        event: string;
      };
      return `${event.counter}:${event.event}`;
    }),
  );
  return {
    status: (await readFile(join(root, "status"), "utf8")).trim(),
    rc: (await readFile(join(root, "rc"), "utf8")).trim(),
    events: events.sort((a, b) => Number.parseInt(a, 10) - Number.parseInt(b, 10)),
  };
}

beforeAll(async () => {
  const check = await sh(mesh, "command -v ansible-runner");
  if (check.code !== 0)
    throw new Error("ansible-runner is not installed: apt-get install -y ansible-core python3-ansible-runner");
  dir = await tempDir();
  agent = await startAgent({
    mesh,
    nodeId: "ansible-node",
    config: `
- work-command:
    worktype: ansible-runner
    command: bash
    # The worker's own stdout is captured on the agent side to compare with what meshctl prints.
    params: -o pipefail -c "ansible-runner worker | tee ${dir}/worker.out"
- work-command:
    worktype: ansible-worker
    command: ansible-runner
    params: worker
- work-command:
    worktype: ansible-warm
    command: ansible-runner
    params: worker
    warmstart: true
`,
  });
});

afterAll(async () => {
  await agent.stop();
});

describe("ansible-runner through the mesh", () => {
  it("gives the same artifacts as the direct pipe, and meshctl prints the worker's bytes exactly", async () => {
    const viaMesh = await sh(
      mesh,
      `ansible-runner transmit demo -p site.yml | $MESHCTL work submit ansible-runner -f -p - | tee ${dir}/client.out | ansible-runner process ${dir}/mesh-out`,
    );
    expect(viaMesh.code, viaMesh.stderr).toBe(0);
    const direct = await sh(
      mesh,
      `ansible-runner transmit demo -p site.yml | ansible-runner worker | ansible-runner process ${dir}/direct-out`,
    );
    expect(direct.code, direct.stderr).toBe(0);

    const [a, b] = await Promise.all([artifacts(join(dir, "mesh-out")), artifacts(join(dir, "direct-out"))]);
    expect(a.status).toBe("successful");
    expect(a).toEqual(b);
    expect(a.events).toContain("1:playbook_on_start");

    const [client, worker] = await Promise.all([readFile(join(dir, "client.out")), readFile(join(dir, "worker.out"))]);
    expect(client.byteLength).toBeGreaterThan(0);
    expect(client.equals(worker)).toBe(true);
  });

  it("a worker started ahead (warmstart) gives the same artifacts as the direct pipe", async () => {
    await waitFor(() => agent.logs().includes('"warm:ready"'), "a warm worker", 30_000);
    const viaMesh = await sh(
      mesh,
      `ansible-runner transmit demo -p site.yml | $MESHCTL work submit ansible-warm -f -p - | ansible-runner process ${dir}/warm-out`,
    );
    expect(viaMesh.code, viaMesh.stderr).toBe(0);
    const direct = await sh(
      mesh,
      `ansible-runner transmit demo -p site.yml | ansible-runner worker | ansible-runner process ${dir}/warm-direct-out`,
    );
    expect(direct.code, direct.stderr).toBe(0);
    const [a, b] = await Promise.all([artifacts(join(dir, "warm-out")), artifacts(join(dir, "warm-direct-out"))]);
    expect(a.status).toBe("successful");
    expect(a).toEqual(b);
    const units = (await api<UnitRecord[]>(mesh, "GET", "/units")).body.filter((u) => u.worktype === "ansible-warm");
    const started = agent
      .logs()
      .split("\n")
      .find((line) => line.includes('"unit:started"') && line.includes(units[0]!.id));
    expect(started).toContain('"warm":true');
  });

  it("a failing playbook makes `meshctl work submit -f` exit non-zero, with the failure in the artifacts", async () => {
    const failing = join(ROOT, "test/fixtures/failing");
    const result = await sh(
      mesh,
      `ansible-runner transmit ${failing} -p site.yml | $MESHCTL work submit ansible-runner -f -p - | ansible-runner process ${dir}/fail-out`,
    );
    expect(result.code).not.toBe(0);
    expect(result.stderr).toMatch(/Failed: exit status 2/);
    const out = await artifacts(join(dir, "fail-out"));
    expect(out.status).toBe("failed");
    expect(out.rc).toBe("2");
    expect(out.events.some((e) => e.endsWith(":runner_on_failed"))).toBe(true);
  });

  it("a canceled playbook still returns its final status and artifacts", async () => {
    const slow = join(ROOT, "test/fixtures/slow");
    const submitted = await sh(
      mesh,
      `ansible-runner transmit ${slow} -p site.yml | $MESHCTL work submit ansible-worker -p -`,
    );
    expect(submitted.code, submitted.stderr).toBe(0);
    const { id } = JSON.parse(submitted.stdout.toString()) as { id: string };
    // Cancel once the long task has started, so the cancel interrupts a real play.
    await waitFor(
      async () => String((await api(mesh, "GET", `/units/${id}/results`)).body).includes("wait for the cancel"),
      "the long task to start",
      60_000,
    );
    expect((await sh(mesh, `$MESHCTL work cancel ${id}`)).code).toBe(0);
    await waitFor(
      async () => (await api<UnitRecord>(mesh, "GET", `/units/${id}`)).body.state === "Canceled",
      "the unit to be Canceled",
      60_000,
    );
    const processed = await sh(mesh, `$MESHCTL work results ${id} | ansible-runner process ${dir}/cancel-out`);
    expect(processed.code, processed.stderr).toBe(0);
    const out = await artifacts(join(dir, "cancel-out"));
    expect(out.status).toBe("canceled");
    expect(out.events.some((e) => e.endsWith(":playbook_on_start"))).toBe(true);
  });
});
