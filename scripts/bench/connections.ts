/**
 * Item 5: idle agent connections one local broker holds, simulated in this process (sim-node.ts),
 * workerd's memory per connection, and how long 1,000 of them take to come back after the broker
 * restarts. Runs last: it restarts the broker.
 */
import { freemem } from "node:os";
import type { BenchEnv } from "./env.js";
import { rssMiB, workerdPid } from "./proc.js";
import type { Row } from "./report.js";
import { round } from "./stats.js";
import { SimNode } from "./sim-node.js";

const MESH = "bench-connections";
/** Joins opened at once: enough to keep workerd busy without a burst of thousands of handshakes. */
const OPENING = 50;
/** Stop growing when the machine has less than this free, rather than push it into the OOM killer. */
const MIN_FREE_BYTES = 2 * 2 ** 30;

async function until(check: () => boolean, what: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

export async function connections(env: BenchEnv, first: number, max: number): Promise<Row[]> {
  const url = `${env.broker.url.replace(/^http/, "ws")}/v1/meshes/${MESH}/connect`;
  const nodes: SimNode[] = [];
  const grow = async (to: number) => {
    while (nodes.length < to && freemem() > MIN_FREE_BYTES) {
      const batch = Array.from({ length: Math.min(OPENING, to - nodes.length) }, (_, i) => {
        const id = `sim-${nodes.length + i}`;
        return new SimNode(`${url}?node=${id}`, env.broker.token, id);
      });
      nodes.push(...batch);
      for (const node of batch) void node.run();
      await until(() => batch.every((n) => n.welcomes > 0), "simulated nodes to join", 60_000);
    }
  };
  const workerdRss = () => rssMiB(workerdPid(env.broker.process.pid!)) ?? Number.NaN;
  try {
    const baseline = workerdRss();
    let started = Date.now();
    await grow(first);
    const joinSeconds = (Date.now() - started) / 1000;
    const atFirst = workerdRss();

    const welcomed = nodes.map((n) => n.welcomes);
    const dropped = Date.now();
    await env.restartBroker();
    const up = Date.now();
    await until(() => nodes.every((n, i) => n.welcomes > welcomed[i]!), "simulated nodes to reconnect", 120_000);
    const back = Date.now();
    const connected = (await env.status(MESH)).nodes.filter((n) => n.connected).length;

    const restartedBaseline = workerdRss();
    started = Date.now();
    await grow(max);
    const growSeconds = (Date.now() - started) / 1000;
    const atMax = workerdRss();
    const held = (await env.status(MESH)).nodes.filter((n) => n.connected).length;
    const perConnection = (mib: number, base: number, count: number) => round(((mib - base) * 1024) / count, 1);
    return [
      {
        item: 5,
        measure: "idle agent connections one broker holds (simulated, joined, said hello)",
        result: `${held} of ${nodes.length} connected; workerd RSS ${round(atMax)} MiB = ${perConnection(atMax, restartedBaseline, nodes.length)} KiB a connection`,
        comparedWith: `${first}: RSS ${round(atFirst)} MiB from ${round(baseline)} MiB = ${perConnection(atFirst, baseline, first)} KiB a connection; joins took ${round(joinSeconds)} s`,
        goal: `${first}, then up to ${max} as memory allows`,
        met: held === nodes.length && nodes.length >= first,
        data: {
          first,
          max,
          held,
          baselineMiB: round(baseline),
          atFirstMiB: round(atFirst),
          restartedBaselineMiB: round(restartedBaseline),
          atMaxMiB: round(atMax),
          joinSeconds,
          growSeconds,
        },
      },
      {
        item: 5,
        measure: `${first} agents reconnecting after a broker restart (agent backoff: full jitter, 0.5 s base)`,
        result: `${round((back - up) / 1000, 1)} s after the broker answered again (${round((back - dropped) / 1000, 1)} s after it went down); ${connected} connected`,
        comparedWith: `broker restart itself (wrangler dev): ${round((up - dropped) / 1000, 1)} s`,
        goal: "≤ 10 s",
        met: (back - up) / 1000 <= 10 && connected === first,
        data: { reconnectSeconds: (back - up) / 1000, fromDropSeconds: (back - dropped) / 1000, restartSeconds: (up - dropped) / 1000, connected },
      },
    ];
  } finally {
    for (const node of nodes) node.stop();
  }
}
