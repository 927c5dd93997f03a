/**
 * Item 1: the demo playbook through broker + agent + meshctl against the direct
 * `transmit | worker | process` pipe, alternated run by run so that both see the same machine.
 * The mesh's work type has `warmstart` (the agent keeps a worker started ahead, agent/warm.ts). Two
 * more pipelines run the same through the mesh without it (early start only) and with
 * `streamingpayload: false` as well, so the row shows what each brings.
 */
import { spawn } from "node:child_process";
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { ROOT } from "../local-broker.js";
import type { BenchEnv } from "./env.js";
import type { Row } from "./report.js";
import { median, round } from "./stats.js";
import { now } from "./units.js";

const MESH = "bench-playbook";

function timed(script: string, env: NodeJS.ProcessEnv): Promise<number> {
  return new Promise((resolve, reject) => {
    const started = now();
    let stderr = "";
    const child = spawn("bash", ["-o", "pipefail", "-c", script], {
      cwd: ROOT,
      env,
      stdio: ["ignore", "ignore", "pipe"],
    });
    child.stderr.on("data", (d) => (stderr += d));
    child.once("exit", (code) =>
      code === 0 ? resolve(now() - started) : reject(new Error(`${script} exited ${code}: ${stderr.slice(-500)}`)),
    );
  });
}

export async function playbook(env: BenchEnv, runs: number): Promise<Row> {
  const agent = await env.startAgent(MESH, [
    "{worktype: ansible-runner, command: ansible-runner, params: worker, warmstart: true}",
    "{worktype: runner-cold, command: ansible-runner, params: worker}",
    "{worktype: runner-whole, command: ansible-runner, params: worker, streamingpayload: false}",
  ]);
  const out = join(env.dir, "playbook-out");
  const direct = `ansible-runner transmit demo -p site.yml | ansible-runner worker | ansible-runner process ${out}`;
  const viaMesh = `ansible-runner transmit demo -p site.yml | $MESHCTL work submit ansible-runner -f -p - | ansible-runner process ${out}`;
  const viaMeshCold = viaMesh.replace("submit ansible-runner", "submit runner-cold");
  const viaMeshWhole = viaMesh.replace("submit ansible-runner", "submit runner-whole");
  const times = { direct: [] as number[], mesh: [] as number[], cold: [] as number[], whole: [] as number[] };
  try {
    const run = async (script: string) => {
      await rm(out, { recursive: true, force: true });
      return timed(script, env.shellEnv(MESH));
    };
    // One unmeasured run of each warms the page cache and the broker's objects.
    await run(direct);
    await run(viaMesh);
    await run(viaMeshCold);
    await run(viaMeshWhole);
    for (let i = 0; i < runs; i++) {
      times.direct.push(await run(direct));
      times.mesh.push(await run(viaMesh));
      times.cold.push(await run(viaMeshCold));
      times.whole.push(await run(viaMeshWhole));
    }
  } finally {
    await agent.stop();
  }
  // Each warm-start run should have found its worker waiting (the unmeasured first one included).
  const warmStarts = agent.events().filter((e) => e.event === "unit:started" && e.warm).length;
  const ratio = median(times.mesh) / median(times.direct);
  return {
    item: 1,
    measure: `demo playbook, median of ${runs} alternated runs`,
    result:
      `${round(median(times.mesh) / 1000, 2)} s through the mesh = ${round(ratio, 2)}× ` +
      `(without warm start: ${round(median(times.cold) / 1000, 2)} s = ${round(median(times.cold) / median(times.direct), 2)}×; ` +
      `without early start either: ${round(median(times.whole) / 1000, 2)} s = ${round(median(times.whole) / median(times.direct), 2)}×)`,
    comparedWith: `direct transmit | worker | process: ${round(median(times.direct) / 1000, 2)} s`,
    goal: "≤ 1.05×",
    met: ratio <= 1.05,
    headline: { value: ratio, unit: "×" },
    data: {
      directMs: times.direct.map((t) => round(t)),
      meshMs: times.mesh.map((t) => round(t)),
      coldStartMs: times.cold.map((t) => round(t)),
      warmStarts: `${warmStarts} of ${runs + 1}`,
      wholePayloadFirstMs: times.whole.map((t) => round(t)),
      ratio: round(ratio, 3),
    },
  };
}
