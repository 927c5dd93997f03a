/**
 * Item 5: idle agent connections one local broker holds, simulated in this process (sim-node.ts),
 * workerd's memory and file descriptors per connection, and how long 1,000 of them take to come back
 * after the broker restarts. Runs last: it restarts the broker.
 */
import { freemem } from "node:os";
import type { BenchEnv } from "./env.js";
import { openFileLimit, openFiles, totalRssMiB, workerdPids } from "./proc.js";
import type { Row } from "./report.js";
import { SimNode } from "./sim-node.js";
import { round } from "./stats.js";

const MESH = "bench-connections";
/** Joins opened at once: enough to keep workerd busy without a burst of thousands of handshakes. */
const OPENING = 50;
/** Stop growing when the machine has less than this free, rather than push it into the OOM killer. */
const MIN_FREE_BYTES = 2 * 2 ** 30;
/** A batch that cannot join in this time means the broker has reached its ceiling. */
const BATCH_TIMEOUT_MS = 20_000;
/**
 * Open files a batch may need in any one workerd process, measured at about 7 a connection over
 * all of them. Past its limit workerd fails every accept and wrangler dev exits, so stop short.
 */
const BATCH_FDS = OPENING * 10;

async function until(check: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 20));
  }
  return true;
}

export async function connections(env: BenchEnv, first: number, max: number): Promise<Row[]> {
  const url = `${env.broker.url.replace(/^http/, "ws")}/v1/meshes/${MESH}/connect`;
  const nodes: SimNode[] = [];
  const workerd = () => workerdPids(env.broker.process.pid!);
  /** Adds nodes up to `to`; answers why it stopped short, or null. */
  const grow = async (to: number): Promise<string | null> => {
    while (nodes.length < to) {
      if (freemem() < MIN_FREE_BYTES) return `free memory below ${MIN_FREE_BYTES / 2 ** 30} GiB`;
      const full = workerd().find((pid) => openFileLimit(pid) - openFiles([pid]) < BATCH_FDS);
      if (full !== undefined) return `workerd pid ${full} near its open-file limit: ${openFiles([full])} of ${openFileLimit(full)} in use`;
      const batch = Array.from({ length: Math.min(OPENING, to - nodes.length) }, (_, i) => {
        const id = `sim-${nodes.length + i}`;
        return new SimNode(`${url}?node=${id}`, env.broker.token, id);
      });
      nodes.push(...batch);
      for (const node of batch) void node.run();
      if (!(await until(() => batch.every((n) => n.welcomes > 0), BATCH_TIMEOUT_MS))) {
        return `${batch.filter((n) => n.welcomes === 0).length} of the last ${batch.length} joins got no welcome within ${BATCH_TIMEOUT_MS / 1000} s (see the broker log: workerd's file descriptors)`;
      }
    }
    return null;
  };
  const measure = () => ({ rss: totalRssMiB(workerd()) ?? Number.NaN, fds: openFiles(workerd()) });
  const perConnection = (after: number, before: number, count: number) => round((after - before) / count, 2);
  const connectedCount = async () => (await env.status(MESH)).nodes.filter((n) => n.connected).length;
  try {
    const baseline = measure();
    let started = Date.now();
    const firstShort = await grow(first);
    if (firstShort) throw new Error(`only ${nodes.length} connections: ${firstShort}`);
    const joinSeconds = (Date.now() - started) / 1000;
    const atFirst = measure();

    const welcomed = nodes.map((n) => n.welcomes);
    const dropped = Date.now();
    await env.restartBroker();
    const up = Date.now();
    const allBack = await until(() => nodes.every((n, i) => n.welcomes > welcomed[i]!), 120_000);
    const back = Date.now();
    const reconnected = await connectedCount();

    const restarted = measure();
    started = Date.now();
    const stoppedBy = await grow(max);
    const growSeconds = (Date.now() - started) / 1000;
    const atMax = measure();
    const held = await connectedCount();
    const grown = nodes.length - first;
    return [
      {
        item: 5,
        measure: "idle agent connections one broker holds (simulated nodes: joined, said hello)",
        result:
          `${held} held of ${nodes.length} tried${stoppedBy ? ` (stopped: ${stoppedBy})` : ""}; ` +
          `${perConnection(atMax.rss * 1024, restarted.rss * 1024, grown)} KiB and ${perConnection(atMax.fds, restarted.fds, grown)} fds of workerd a connection`,
        comparedWith: `first ${first}: workerd RSS ${round(baseline.rss)} → ${round(atFirst.rss)} MiB = ${perConnection(atFirst.rss * 1024, baseline.rss * 1024, first)} KiB a connection, joined in ${round(joinSeconds)} s`,
        goal: `${first}, then up to ${max} as memory allows`,
        met: held >= first,
        headline: { value: held, unit: "connections held" },
        data: { first, max, tried: nodes.length, held, stoppedBy, baseline, atFirst, restarted, atMax, joinSeconds, growSeconds },
      },
      {
        item: 5,
        measure: `${first} agents reconnecting after a broker restart (the agent's reconnect: full jitter below the downtime, at least 2 s)`,
        result: allBack
          ? `${round((back - up) / 1000, 1)} s after the broker answered again (${round((back - dropped) / 1000, 1)} s after it went down); ${reconnected} connected`
          : `not all back within 120 s; ${reconnected} connected`,
        comparedWith: `the broker's own restart (${env.runtime === "serve" ? "mesh-broker serve" : "wrangler dev"}): ${round((up - dropped) / 1000, 1)} s`,
        goal: "≤ 10 s",
        met: allBack && (back - up) / 1000 <= 10 && reconnected === first,
        headline: { value: allBack ? (back - up) / 1000 : Number.NaN, unit: "s to reconnect" },
        data: { reconnectSeconds: (back - up) / 1000, fromDropSeconds: (back - dropped) / 1000, restartSeconds: (up - dropped) / 1000, reconnected },
      },
    ];
  } finally {
    for (const node of nodes) node.stop();
  }
}
