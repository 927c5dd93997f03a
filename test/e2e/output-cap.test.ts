/** Output caps (issue 17): a unit writing more than its work type's cap keeps head and tail, readable by `ansible-runner process`. */
import { readFile, readdir } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ROOT } from "../../scripts/local-broker.js";
import type { UnitRecord } from "../../shared/unit.js";
import { type RunningAgent, api, newMesh, sh, startAgent, submitScript, tempDir, waitFinished } from "./harness.js";

const mesh = newMesh();
let agent: RunningAgent;
let dir: string;
const CAP = 64 * 1024;

beforeAll(async () => {
  dir = await tempDir();
  agent = await startAgent({
    mesh,
    nodeId: "capped",
    config: `
- work-command: {worktype: sh, command: sh, params: "-c", allowruntimeparams: true, outputcap: 64KiB}
- work-command: {worktype: ansible-worker, command: ansible-runner, params: worker, outputcap: 64KiB}
- work-command: {worktype: ansible-whole, command: ansible-runner, params: worker}
`,
  });
});

afterAll(async () => {
  await agent.stop();
});

/** The job events an `ansible-runner process` output dir holds, as "counter:event", and its status. */
async function processed(out: string) {
  const base = join(out, "artifacts");
  const entries = await readdir(base, { withFileTypes: true });
  const nested = entries.find((e) => e.isDirectory() && e.name !== "job_events" && e.name !== "fact_cache");
  const root = entries.some((e) => e.name === "status") ? base : join(base, nested!.name);
  const files = await readdir(join(root, "job_events"));
  const events = await Promise.all(
    files.map(
      async (f) =>
        JSON.parse(await readFile(join(root, "job_events", f), "utf8")) as {
          counter: number;
          event: string;
          stdout?: string;
        },
    ),
  );
  return {
    status: (await readFile(join(root, "status"), "utf8")).trim(),
    events: events.sort((a, b) => a.counter - b.counter),
  };
}

describe("output cap", () => {
  it("plain output over the cap: the head and the tail, a marker line between, and the cut in the unit's status", async () => {
    const unit = await submitScript(
      mesh,
      'i=0; while [ $i -lt 5000 ]; do printf "line %05d %s\\n" $i xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx; i=$((i+1)); done',
    );
    const done = await waitFinished(mesh, unit.id);
    expect(done.state).toBe("Succeeded");
    const results = String((await api(mesh, "GET", `/units/${unit.id}/results`)).body);
    const lines = results.split("\n");
    expect(lines[0]).toMatch(/^line 00000 x+$/);
    expect(lines.at(-2)).toMatch(/^line 04999 x+$/);
    const marker = lines.find((l) => l.startsWith("[mesh-agent: output cap:"));
    expect(marker).toMatch(
      /^\[mesh-agent: output cap: \d+ lines \(\d+ bytes\) cut here; the head and the tail are kept\]$/,
    );
    expect(results.length).toBeLessThanOrEqual(CAP + marker!.length + 1);
    expect(done.outputCut).toMatchObject({ lines: expect.any(Number), bytes: expect.any(Number) });
    expect(done.outputCut!.bytes + results.length - marker!.length - 1).toBe(5000 * (lines[0]!.length + 1));
    expect(done.stdoutSize).toBe(results.length);
  });

  it("an ansible-runner worker stream over the cap still goes through `ansible-runner process`: first and last tasks, the stats, a marker event", async () => {
    const chatty = join(ROOT, "test/fixtures/chatty");
    const capped = await sh(
      mesh,
      `ansible-runner transmit ${chatty} -p site.yml | $MESHCTL work submit ansible-worker -f -p - | tee ${dir}/capped.out | ansible-runner process ${dir}/capped`,
    );
    expect(capped.code, capped.stderr).toBe(0);
    const whole = await sh(
      mesh,
      `ansible-runner transmit ${chatty} -p site.yml | $MESHCTL work submit ansible-whole -f -p - | ansible-runner process ${dir}/whole`,
    );
    expect(whole.code, whole.stderr).toBe(0);
    const [a, b] = await Promise.all([processed(join(dir, "capped")), processed(join(dir, "whole"))]);
    expect(a.status).toBe("successful");
    expect(b.status).toBe("successful");
    expect(a.events.length).toBeLessThan(b.events.length / 2);
    const names = a.events.map((e) => e.event);
    expect(names[0]).toBe("playbook_on_start");
    expect(names).toContain("playbook_on_stats");
    expect(
      a.events.find((e) => e.event === "verbose" && e.stdout?.startsWith("[mesh-agent: output cap:")),
    ).toBeDefined();
    expect(JSON.stringify(a.events)).toContain("the beginning");
    expect(JSON.stringify(a.events)).toContain("the end");
    const bytes = (await readFile(join(dir, "capped.out"))).byteLength;
    // The cap counts event lines; the framing (status lines, the artifacts zip, eof) comes on top.
    expect(bytes).toBeLessThan(CAP + 64 * 1024);
    const list = (await api<UnitRecord[]>(mesh, "GET", "/units?records=1")).body.filter(
      (u) => u.worktype === "ansible-worker",
    );
    expect(list[0]?.outputCut?.lines).toBeGreaterThan(100);
  });
});
