/**
 * Item 7: the broker's CPU time (workerd's utime + stime) for 100 units against 1,000, each a
 * submit and a results follower as meshctl does it, a few at a time, on one real agent.
 */
import type { BenchEnv } from "./env.js";
import { cpuSeconds, workerdPids } from "./proc.js";
import type { Row } from "./report.js";
import { round } from "./stats.js";
import { follow, submit } from "./units.js";

const MESH = "bench-scaling";
const IN_FLIGHT = 4;

async function runUnits(env: BenchEnv, count: number): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < count) {
      next++;
      const id = await submit(env, MESH, "true");
      await follow(env, MESH, id);
    }
  };
  await Promise.all(Array.from({ length: IN_FLIGHT }, worker));
}

export async function scaling(env: BenchEnv, small: number, large: number): Promise<Row> {
  const agent = await env.startAgent(MESH, ["{worktype: 'true', command: 'true'}"], { capacity: IN_FLIGHT });
  const workerd = workerdPids(env.broker.process.pid!);
  const cpu: Record<"small" | "large", number> = { small: 0, large: 0 };
  const wall: Record<"small" | "large", number> = { small: 0, large: 0 };
  try {
    await runUnits(env, 10);
    for (const [kind, count] of [
      ["small", small],
      ["large", large],
    ] as const) {
      const before = cpuSeconds(workerd);
      const started = Date.now();
      await runUnits(env, count);
      wall[kind] = (Date.now() - started) / 1000;
      cpu[kind] = cpuSeconds(workerd) - before;
    }
  } finally {
    await agent.stop();
  }
  const ratio = cpu.large / cpu.small;
  return {
    item: 7,
    measure: `broker (workerd) CPU time, ${small} vs ${large} units`,
    result: `${round(cpu.large, 2)} s for ${large} = ${round(ratio, 2)}× (${round((cpu.large / large) * 1000, 1)} ms a unit)`,
    comparedWith: `${round(cpu.small, 2)} s for ${small} units (${round((cpu.small / small) * 1000, 1)} ms a unit)`,
    goal: `≤ ${large / small}×`,
    met: ratio <= large / small,
    headline: { value: ratio, unit: "×" },
    data: {
      small,
      large,
      cpuSeconds: { small: round(cpu.small, 2), large: round(cpu.large, 2) },
      wallSeconds: wall,
      ratio: round(ratio, 2),
    },
  };
}
