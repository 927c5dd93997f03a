/**
 * Items 3 and 6: a 200 MiB results stream through the mesh (agent → Unit object → follower), next
 * to the raw transports and to the storage ceiling (a Durable Object that only stores the frames,
 * sink/worker.js), alternated run by run; the agent's RSS idle and while it streams.
 */
import { join } from "node:path";
import { ROOT, startBroker } from "../local-broker.js";
import type { BenchEnv } from "./env.js";
import { cpuSeconds, descendants, privateMiB, rssMiB, rssSampler, totalRssMiB, workerdPids } from "./proc.js";
import type { Row } from "./report.js";
import { median, round } from "./stats.js";
import { rawTcp, rawWebSocket } from "./transports.js";
import { follow, now, submit, unitState } from "./units.js";

const MESH = "bench-throughput";
const MIB = 1024 * 1024;

export async function throughput(env: BenchEnv, mib: number, runs: number): Promise<Row[]> {
  const total = mib * MIB;
  const sink = await startBroker({
    stateDir: join(env.dir, "sink-state"),
    token: "unused",
    logFile: join(env.dir, "sink.log"),
    config: join(ROOT, "scripts/bench/sink/wrangler.toml"),
  });
  const agent = await env.startAgent(MESH, ["{worktype: sh, command: sh, params: '-c', allowruntimeparams: true}"]);
  const times = {
    mesh: [] as number[],
    readBack: [] as number[],
    ws: [] as number[],
    store: [] as number[],
    tcp: [] as number[],
  };
  const cpu = { broker: [] as number[], agent: [] as number[] };
  let idleRss = 0;
  let idlePrivate = 0;
  let supervisor = { count: 0, rss: 0, private: 0 };
  let streamingRss = 0;
  try {
    // Let the freshly connected agent settle before calling it idle.
    await new Promise((r) => setTimeout(r, 2000));
    idleRss = rssMiB(agent.pid) ?? Number.NaN;
    idlePrivate = privateMiB(agent.pid) ?? Number.NaN;
    // The agent's supervisor (agent/supervisor.ts), which runs every unit's command.
    const children = descendants(agent.pid);
    supervisor = {
      count: children.length,
      rss: totalRssMiB(children) ?? 0,
      private: children.reduce((sum, pid) => sum + (privateMiB(pid) ?? 0), 0),
    };
    for (let i = 0; i < runs; i++) {
      times.tcp.push(await rawTcp(total));
      times.ws.push(await rawWebSocket(sink.url.replace(/^http/, "ws"), total));
      times.store.push(await rawWebSocket(`${sink.url.replace(/^http/, "ws")}/store`, total));
      const sampler = rssSampler(agent.pid);
      const cpuBefore = { broker: cpuSeconds(workerdPids(env.broker.process.pid!)), agent: cpuSeconds([agent.pid]) };
      const started = now();
      const id = await submit(env, MESH, "sh", { params: `'head -c ${total} /dev/zero'` });
      const got = await follow(env, MESH, id);
      times.mesh.push(now() - started);
      cpu.broker.push(cpuSeconds(workerdPids(env.broker.process.pid!)) - cpuBefore.broker);
      cpu.agent.push(cpuSeconds([agent.pid]) - cpuBefore.agent);
      streamingRss = Math.max(streamingRss, sampler.stop());
      // The same bytes again from storage, with no agent on the path: which side sets the pace.
      const readStarted = now();
      await follow(env, MESH, id);
      times.readBack.push(now() - readStarted);
      if (got.bytes !== total) {
        const unit = await unitState(env, MESH, id);
        const log = agent.events().filter((e) => e.unit === id);
        throw new Error(
          `mesh results: got ${got.bytes} of ${total} bytes; unit ${unit.state}: ${unit.detail}; agent: ${JSON.stringify(log)}`,
        );
      }
    }
  } finally {
    await agent.stop();
    await sink.stop();
  }
  const rate = (ms: number[]) => round(mib / (median(ms) / 1000));
  const share = rate(times.mesh) / rate(times.ws);
  return [
    {
      item: 3,
      measure: `results throughput, ${mib} MiB stream, median of ${runs} alternated runs`,
      result: `${rate(times.mesh)} MiB/s through the mesh = ${Math.round(share * 100)} % of raw WebSocket (reading the finished unit back: ${rate(times.readBack)} MiB/s); CPU per run: workerd ${round(median(cpu.broker))} s, agent ${round(median(cpu.agent))} s`,
      comparedWith:
        `raw WebSocket into a Worker on the same workerd: ${rate(times.ws)} MiB/s; ` +
        `into a Durable Object that only stores each frame durably (the storage ceiling): ${rate(times.store)} MiB/s = ${Math.round((rate(times.store) / rate(times.ws)) * 100)} %; ` +
        `raw loopback TCP: ${rate(times.tcp)} MiB/s`,
      goal: "≥ 50 % of raw WebSocket",
      met: share >= 0.5,
      headline: { value: share * 100, unit: "% of raw WebSocket" },
      data: {
        mib,
        meshMs: times.mesh.map((t) => round(t)),
        readBackMs: times.readBack.map((t) => round(t)),
        cpuSeconds: { workerd: cpu.broker.map((c) => round(c, 2)), agent: cpu.agent.map((c) => round(c, 2)) },
        webSocketMs: times.ws.map((t) => round(t)),
        storeOnlyMs: times.store.map((t) => round(t)),
        tcpMs: times.tcp.map((t) => round(t)),
        share: round(share, 3),
      },
    },
    {
      item: 6,
      measure: "agent RSS (VmRSS), idle and while streaming",
      result:
        `idle ${round(idleRss)} MiB (${round(idlePrivate)} MiB of it private); peak ${round(streamingRss)} MiB while streaming ${mib} MiB; ` +
        `beside it ${supervisor.count} supervisor: ${round(supervisor.rss)} MiB RSS, ${round(supervisor.private)} MiB private`,
      comparedWith: `the ${mib} MiB it streamed (bounded: peak − idle ≪ stream size)`,
      goal: "idle ≤ 50 MiB; bounded while streaming",
      met: idleRss <= 50 && streamingRss - idleRss < mib / 2,
      headline: { value: idleRss, unit: "MiB idle RSS" },
      data: {
        idleMiB: round(idleRss),
        idlePrivateMiB: round(idlePrivate),
        streamingPeakMiB: round(streamingRss),
        supervisor,
      },
    },
  ];
}
