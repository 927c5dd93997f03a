/**
 * Item 5: idle agent connections one local broker holds, simulated in this process (sim-node.ts),
 * workerd's memory and file descriptors per connection, how long the first `first` and then all of
 * them take to come back after the broker restarts, and the Mesh object's hello admission rate
 * (welcomes a second, seen by the nodes). Runs last: it restarts the broker.
 */
import { readdirSync } from "node:fs";
import { freemem } from "node:os";
import type { BenchEnv } from "./env.js";
import { openFileLimit, openFiles, totalRssMiB, workerdPids } from "./proc.js";
import type { Row } from "./report.js";
import { SimNode } from "./sim-node.js";
import { arrivalRate, round } from "./stats.js";

/** Joins opened at once: enough to keep workerd busy without a burst of thousands of handshakes. */
const OPENING = 50;
/** Stop growing when the machine has less than this free, rather than push it into the OOM killer. */
const MIN_FREE_BYTES = 2 * 2 ** 30;
/** A batch that cannot join in this time means the broker has reached its ceiling. */
const BATCH_TIMEOUT_MS = 20_000;
/**
 * Open files a batch may need in any one workerd process (wrangler dev's measured ~7 a connection;
 * serve's ~0.1). Past its limit workerd fails every accept and wrangler dev exits, so stop short.
 */
const BATCH_FDS = OPENING * 10;
/** The whole growth loop's time (BENCH_CONNECTIONS_BUDGET_S): past it the row says where it stopped. */
const GROW_BUDGET_MS = Number(process.env.BENCH_CONNECTIONS_BUDGET_S ?? 300) * 1000;
/** How long every node may take to come back after a restart. */
const RECONNECT_TIMEOUT_MS = 300_000;
/** This process holds one socket a simulated node: stop short of its own limit too. */
const OWN_FDS_SPARE = 500;

async function until(check: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 50));
  }
  return true;
}

const ownOpenFiles = () => readdirSync("/proc/self/fd").length;

export async function connections(env: BenchEnv, first: number, max: number): Promise<Row[]> {
  // A mesh of each run's own: a repeated run's joins would find the earlier run's node ids taken.
  const MESH = `bench-connections-${Date.now().toString(36)}`;
  const url = `${env.broker.url.replace(/^http/, "ws")}/v1/meshes/${MESH}/connect`;
  const nodes: SimNode[] = [];
  const workerd = () => workerdPids(env.broker.process.pid!);
  /** Seconds each further thousand took to join (a join or hello costing O(n) shows as growth here). */
  const perThousand: number[] = [];
  let thousandStarted = Date.now();
  /** Adds nodes up to `to` within `budgetMs`; answers why it stopped short, or null. */
  const grow = async (to: number, budgetMs: number): Promise<string | null> => {
    const deadline = Date.now() + budgetMs;
    while (nodes.length < to) {
      if (Date.now() > deadline) return `time budget of ${budgetMs / 1000} s spent`;
      if (freemem() < MIN_FREE_BYTES) return `free memory below ${MIN_FREE_BYTES / 2 ** 30} GiB`;
      const full = workerd().find((pid) => openFileLimit(pid) - openFiles([pid]) < BATCH_FDS);
      if (full !== undefined)
        return `workerd pid ${full} near its open-file limit: ${openFiles([full])} of ${openFileLimit(full)} in use`;
      if (openFileLimit(process.pid) - ownOpenFiles() < OWN_FDS_SPARE) {
        return `the bench process near its own open-file limit (one a simulated node): ${ownOpenFiles()} of ${openFileLimit(process.pid)}`;
      }
      const batch = Array.from({ length: Math.min(OPENING, to - nodes.length) }, (_, i) => {
        const id = `sim-${nodes.length + i}`;
        return new SimNode(`${url}?node=${id}`, env.broker.token, id);
      });
      nodes.push(...batch);
      for (const node of batch) void node.run();
      if (!(await until(() => batch.every((n) => n.welcomes > 0), BATCH_TIMEOUT_MS))) {
        return `${batch.filter((n) => n.welcomes === 0).length} of the last ${batch.length} joins got no welcome within ${BATCH_TIMEOUT_MS / 1000} s (see the broker log: workerd's file descriptors)`;
      }
      if (nodes.length % 1000 === 0) {
        perThousand.push(round((Date.now() - thousandStarted) / 1000, 1));
        thousandStarted = Date.now();
      }
    }
    return null;
  };
  const measure = () => ({ rss: totalRssMiB(workerd()) ?? Number.NaN, fds: openFiles(workerd()) });
  const perConnection = (after: number, before: number, count: number) => round((after - before) / count, 2);
  const connectedCount = async () => (await env.status(MESH)).nodes.filter((n) => n.connected).length;
  /** Restarts the broker and waits for `count` nodes (the first ones) to be welcomed again. */
  const storm = async (count: number) => {
    const group = nodes.slice(0, count);
    const welcomed = group.map((n) => n.welcomes);
    const dropped = Date.now();
    await env.restartBroker();
    const up = Date.now();
    const allBack = await until(() => group.every((n, i) => n.welcomes > welcomed[i]!), RECONNECT_TIMEOUT_MS);
    const back = Date.now();
    const times = group.filter((n, i) => n.welcomes > welcomed[i]!).map((n) => n.welcomedAt);
    const rate = arrivalRate(times);
    const reconnected = await connectedCount();
    return {
      count,
      allBack,
      reconnected,
      reconnectSeconds: (back - up) / 1000,
      fromDropSeconds: (back - dropped) / 1000,
      restartSeconds: (up - dropped) / 1000,
      hellosPerSecondPeak: rate.peakPerSecond,
      hellosPerSecondMean: round(rate.meanPerSecond, 1),
    };
  };
  const stormRow = (s: Awaited<ReturnType<typeof storm>>, goal: string, goalSeconds: number | null): Row => ({
    item: 5,
    measure: `${s.count} agents reconnecting after a broker restart (the agent's reconnect: full jitter below the downtime, at least 2 s)`,
    result: s.allBack
      ? `${round(s.reconnectSeconds, 1)} s after the broker answered again (${round(s.fromDropSeconds, 1)} s after it went down); ${s.reconnected} connected; hellos admitted: peak ${s.hellosPerSecondPeak}/s, mean ${s.hellosPerSecondMean}/s`
      : `not all back within ${RECONNECT_TIMEOUT_MS / 1000} s; ${s.reconnected} connected; hellos admitted: peak ${s.hellosPerSecondPeak}/s`,
    comparedWith: `the broker's own restart (${env.runtime === "serve" ? "mesh-broker serve" : "wrangler dev"}): ${round(s.restartSeconds, 1)} s`,
    goal,
    met: goalSeconds === null ? null : s.allBack && s.reconnectSeconds <= goalSeconds && s.reconnected === s.count,
    headline: { value: s.allBack ? s.reconnectSeconds : Number.NaN, unit: "s to reconnect" },
    data: s,
  });
  try {
    const started = Date.now();
    const baseline = measure();
    const firstShort = await grow(first, GROW_BUDGET_MS);
    if (firstShort) throw new Error(`only ${nodes.length} connections: ${firstShort}`);
    const joinSeconds = (Date.now() - started) / 1000;
    const atFirst = measure();

    const firstStorm = await storm(first);

    const restarted = measure();
    const growStarted = Date.now();
    thousandStarted = growStarted;
    const stoppedBy = await grow(max, Math.max(0, GROW_BUDGET_MS - (growStarted - started)));
    const growSeconds = (Date.now() - growStarted) / 1000;
    const atMax = measure();
    const held = await connectedCount();
    const grown = nodes.length - first;
    const allStorm = await storm(nodes.length);
    const atEnd = measure();
    return [
      {
        item: 5,
        measure: "idle agent connections one broker holds (simulated nodes: joined, said hello)",
        result:
          `${held} held of ${nodes.length} tried${stoppedBy ? ` (stopped: ${stoppedBy})` : ""}; ` +
          `${perConnection(atMax.rss * 1024, restarted.rss * 1024, grown)} KiB and ${perConnection(atMax.fds, restarted.fds, grown)} fds of workerd a connection; ` +
          `each further 1000 joined in ${perThousand.join(", ")} s`,
        comparedWith: `first ${first}: workerd RSS ${round(baseline.rss)} → ${round(atFirst.rss)} MiB = ${perConnection(atFirst.rss * 1024, baseline.rss * 1024, first)} KiB a connection, joined in ${round(joinSeconds)} s`,
        goal: `${first}, then up to ${max} as memory allows`,
        met: held >= first,
        headline: { value: held, unit: "connections held" },
        data: {
          first,
          max,
          tried: nodes.length,
          held,
          stoppedBy,
          baseline,
          atFirst,
          restarted,
          atMax,
          atEnd,
          joinSeconds,
          growSeconds,
          perThousand,
        },
      },
      stormRow(firstStorm, "≤ 10 s", 10),
      stormRow(allStorm, "measured", null),
    ];
  } finally {
    for (const node of nodes) node.stop();
    // All of a service's objects share one thread in workerd: a next run's joins would wait behind
    // this mesh's thousands of close handlers, so let them drain first.
    const deadline = Date.now() + RECONNECT_TIMEOUT_MS;
    while (Date.now() < deadline && (await connectedCount().catch(() => 0)) > 0)
      await new Promise((r) => setTimeout(r, 1000));
  }
}
