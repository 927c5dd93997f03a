/**
 * `npm run bench`: starts a local broker of its own and real agents, runs the benchmarks of issue 7,
 * prints a markdown table and writes the same rows as JSON. Never part of `npm test`.
 *
 * Sizes come from the environment (the defaults take about 5 minutes on 2 cores (item 4 adds ~40 s)):
 *   BENCH_ONLY=1,2,…          items to run (default: all)
 *   BENCH_REPEAT=3            runs of each item; rows give the median run and the spread
 *   BENCH_PLAYBOOK_RUNS=5     alternated runs of each pipeline (item 1)
 *   BENCH_LATENCY_UNITS=200   units timed one at a time (item 2)
 *   BENCH_STREAM_MIB=200      results stream size, BENCH_STREAM_RUNS=2 alternated runs (items 3, 6)
 *   BENCH_EVENTS=100000       runner events per unit, BENCH_EVENT_RUNS=3 alternated runs (item 4)
 *   BENCH_SCALING=100,1000    unit counts compared (item 7)
 *   BENCH_CONNECTIONS=1000,10000  first count (also restarted), then the most to try (item 5),
 *                             on mesh-broker serve and again on wrangler dev (BENCH_WRANGLER=0: serve only)
 *   BENCH_OUT=FILE            the JSON file (default: bench-results.json in the repo)
 *   BENCH_AGENT_NODE_ARGS="--cpu-prof --cpu-prof-dir=DIR"  node flags for the agents, to profile them
 *   BENCH_AGENT_NODE=/usr/bin/node  the Node that runs the agents (default: the bench's own)
 *   BENCH_CONNECTIONS_BUDGET_S=300  the time item 5 may spend growing its connections
 */
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ROOT } from "../local-broker.js";
import { connections } from "./connections.js";
import { BenchEnv } from "./env.js";
import { eventRate } from "./events.js";
import { latency } from "./latency.js";
import { playbook } from "./playbook.js";
import { type Row, machine, markdown } from "./report.js";
import { type Attempt, summarise } from "./repeat.js";
import { scaling } from "./scaling.js";
import { throughput } from "./throughput.js";

const numbers = (name: string, fallback: number[]) => (process.env[name] ?? fallback.join(",")).split(",").map(Number);
const only = new Set(numbers("BENCH_ONLY", [1, 2, 3, 4, 5, 6, 7]));

async function main(): Promise<void> {
  const startedAt = new Date().toISOString();
  const host = machine();
  const dir = await mkdtemp(join(tmpdir(), "mesh-bench-"));
  console.error(`bench: broker state and logs in ${dir}`);
  const env = await BenchEnv.start(dir, randomBytes(24).toString("base64url"));
  const rows: Row[] = [];
  let failed = false;
  const repeat = numbers("BENCH_REPEAT", [3])[0]!;
  const step = async (items: number[], run: () => Promise<Row | Row[]>) => {
    if (!items.some((i) => only.has(i))) return;
    const attempts: Attempt[] = [];
    for (let n = 1; n <= repeat; n++) {
      const began = Date.now();
      try {
        attempts.push({ rows: [await run()].flat().filter((r) => only.has(r.item)) });
        console.error(
          `bench: item ${items.join(", ")} run ${n}/${repeat} done in ${Math.round((Date.now() - began) / 1000)} s`,
        );
      } catch (error) {
        // One failed run still leaves the other runs' and items' figures; the row says what went wrong.
        const message = error instanceof Error ? error.message : String(error);
        console.error(`bench: item ${items.join(", ")} run ${n}/${repeat} failed: ${message}`);
        failed = true;
        attempts.push({ rows: [], error: message });
      }
    }
    const summary = summarise(attempts);
    if (summary.length > 0) rows.push(...summary);
    else
      rows.push(
        ...items
          .filter((i) => only.has(i))
          .map((item) => ({
            item,
            measure: "—",
            result: `failed in all ${repeat} runs: ${attempts[0]?.error}`,
            comparedWith: "—",
            goal: "—",
            met: null,
          })),
      );
  };
  try {
    await step([1], async () => {
      if (spawnSync("sh", ["-c", "command -v ansible-runner"]).status === 0)
        return playbook(env, numbers("BENCH_PLAYBOOK_RUNS", [5])[0]!);
      return {
        item: 1,
        measure: "demo playbook",
        result: "n/a: ansible-runner is not installed",
        comparedWith: "—",
        goal: "≤ 1.05×",
        met: null,
      };
    });
    await step([2], () => latency(env, numbers("BENCH_LATENCY_UNITS", [200])[0]!));
    await step([3, 6], () =>
      throughput(env, numbers("BENCH_STREAM_MIB", [200])[0]!, numbers("BENCH_STREAM_RUNS", [2])[0]!),
    );
    await step([4], () => eventRate(env, numbers("BENCH_EVENTS", [100_000])[0]!, numbers("BENCH_EVENT_RUNS", [3])[0]!));
    await step([7], () => {
      const [small, large] = numbers("BENCH_SCALING", [100, 1000]);
      return scaling(env, small!, large!);
    });
    const [first, max] = numbers("BENCH_CONNECTIONS", [1000, 10000]);
    await step([5], async () =>
      (await connections(env, first!, max!)).map((r) => ({ ...r, measure: `${r.measure} — mesh-broker serve` })),
    );
    // The same on wrangler dev, the Cloudflare toolchain's local runtime, in a broker of its own.
    if (process.env.BENCH_WRANGLER !== "0")
      await step([5], async () => {
        const wranglerDir = join(dir, "wrangler");
        const other = await BenchEnv.start(wranglerDir, randomBytes(24).toString("base64url"), "wrangler");
        try {
          return (await connections(other, first!, max!)).map((r) => ({
            ...r,
            measure: `${r.measure} — wrangler dev`,
          }));
        } finally {
          await other.stop();
        }
      });
  } finally {
    await env.stop();
  }
  rows.sort((a, b) => a.item - b.item);
  const out = process.env.BENCH_OUT ?? join(ROOT, "bench-results.json");
  await writeFile(out, `${JSON.stringify({ startedAt, machine: host, repeat, rows }, null, 2)}\n`);
  console.log(markdown(host, rows, startedAt));
  console.log(`\nJSON: ${out}`);
  // Kept after a failure: the broker's and the sink's logs are there.
  if (failed) console.error(`bench: logs kept in ${dir}`);
  else await rm(dir, { recursive: true, force: true });
  if (failed) process.exitCode = 1;
}

main().catch((error: unknown) => {
  console.error(`bench: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
  process.exit(1);
});
