/**
 * Item 2: submit → first result byte, one small unit at a time on a connected idle agent, broken
 * down by where the time goes. The work command is `date +%s%N`, so its one line of output says when
 * it really ran; the agent's log says when it got the assignment and when it spawned the command.
 * Its work type has inlinestart (docs/agent.md): the empty payload comes in the assignment.
 */
import type { BenchEnv } from "./env.js";
import type { Row } from "./report.js";
import { median, percentile, round } from "./stats.js";
import { follow, now, submit } from "./units.js";

const MESH = "bench-latency";

interface Sample {
  accepted: number;
  assigned: number;
  spawned: number;
  running: number;
  firstByte: number;
}

export async function latency(env: BenchEnv, units: number): Promise<Row> {
  const agent = await env.startAgent(MESH, ["{worktype: now, command: date, params: '+%s%N', inlinestart: true}"]);
  const timings: { id: string; submitted: number; accepted: number; firstByte: number; ranAt: number }[] = [];
  try {
    // Unmeasured: the first units also pay for the broker's and agent's code paths warming up.
    for (let i = 0; i < 5 + units; i++) {
      const submitted = now();
      const id = await submit(env, MESH, "now");
      const accepted = now();
      const got = await follow(env, MESH, id);
      if (got.firstByteAt === null) throw new Error(`unit ${id} gave no results`);
      if (i >= 5)
        timings.push({
          id,
          submitted,
          accepted,
          firstByte: got.firstByteAt,
          ranAt: Number(BigInt(got.firstChunk.trim()) / 1000n) / 1000,
        });
    }
  } finally {
    await agent.stop();
  }
  const logged = new Map<string, number>();
  for (const e of agent.events())
    if (e.unit && (e.event === "unit:assigned" || e.event === "unit:started"))
      logged.set(`${e.event} ${e.unit}`, Date.parse(e.time));
  const samples: Sample[] = timings.map((t) => ({
    accepted: t.accepted - t.submitted,
    assigned: (logged.get(`unit:assigned ${t.id}`) ?? Number.NaN) - t.submitted,
    spawned: (logged.get(`unit:started ${t.id}`) ?? Number.NaN) - t.submitted,
    running: t.ranAt - t.submitted,
    firstByte: t.firstByte - t.submitted,
  }));
  const p50 = (key: keyof Sample) => round(median(samples.map((s) => s[key])));
  const firstByte = samples.map((s) => s.firstByte);
  const breakdown = {
    acceptedMs: p50("accepted"),
    agentAssignedMs: p50("assigned"),
    agentSpawnedMs: p50("spawned"),
    commandRunningMs: p50("running"),
    firstByteMs: p50("firstByte"),
  };
  return {
    item: 2,
    measure: `submit → first result byte, ${units} units one at a time (\`date\`)`,
    result:
      `p50 ${round(median(firstByte))} ms, p99 ${round(percentile(firstByte, 99))} ms; p50 timeline: 201 at ${breakdown.acceptedMs}, ` +
      `agent assigned ${breakdown.agentAssignedMs}, spawned ${breakdown.agentSpawnedMs}, command running ${breakdown.commandRunningMs}, first byte ${breakdown.firstByteMs} ms`,
    comparedWith: "goal on loopback",
    goal: "p50 ≤ 25 ms",
    met: median(firstByte) <= 25,
    headline: { value: median(firstByte), unit: "ms p50" },
    data: { units, p50Ms: round(median(firstByte)), p99Ms: round(percentile(firstByte, 99)), p50Timeline: breakdown },
  };
}
