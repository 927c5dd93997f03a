/**
 * A discrete-event model of a deploy's reconnect storm against one Mesh object versus membership
 * sharded over S objects (docs/benchmarks.md, "Where one mesh stops scaling"). Pure: the clock, the
 * randomness and the costs are parameters, so the figures are reproducible and the model is tested.
 *
 * Each object is single-threaded: it admits one hello at a time at `helloMs` each (measured on
 * workerd: ~170–220 hellos/s into the one Mesh object, so ~5 ms). An object with more than
 * `maxQueue` requests waiting refuses the next (Cloudflare answers "Durable Object is overloaded"),
 * and that agent retries with its real reconnect delay (shared/backoff.ts). An object also refuses
 * sockets beyond `maxSockets` (32,768 per object on Cloudflare). With S > 1 shards each shard sends
 * the Mesh object one batched membership update every `batchEveryMs`, costing `batchBaseMs` plus
 * `batchPerNodeMs` a node: the Mesh object keeps the queue and capacities, not the sockets.
 */
import { CONTROL_RECONNECT, reconnectDelay } from "../../shared/backoff.js";

export interface Model {
  agents: number;
  shards: number;
  helloMs: number;
  maxQueue: number;
  maxSockets: number;
  batchEveryMs: number;
  batchBaseMs: number;
  batchPerNodeMs: number;
}

export interface Outcome {
  /** When the last agent was admitted, ms after the drop; NaN if some never fit. */
  allBackMs: number;
  /** Agents admitted everywhere (shard and Mesh object). */
  admitted: number;
  refusals: number;
  /** Work offered to the Mesh object in its busiest second, in ms (over 1,000 = it falls behind). */
  meshBusiestSecondMs: number;
}

/** A seeded generator (mulberry32) so that a model run is the same every time. */
export function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface Try {
  at: number;
  agent: number;
}

/** A binary min-heap of tries by time. */
class Heap {
  private items: Try[] = [];
  push(t: Try): void {
    const a = this.items;
    a.push(t);
    for (let i = a.length - 1; i > 0; ) {
      const up = (i - 1) >> 1;
      if (a[up]!.at <= a[i]!.at) break;
      [a[up], a[i]] = [a[i]!, a[up]!];
      i = up;
    }
  }
  pop(): Try | undefined {
    const a = this.items;
    const top = a[0];
    const last = a.pop();
    if (a.length > 0 && last) {
      a[0] = last;
      for (let i = 0; ; ) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < a.length && a[l]!.at < a[m]!.at) m = l;
        if (r < a.length && a[r]!.at < a[m]!.at) m = r;
        if (m === i) break;
        [a[m], a[i]] = [a[i]!, a[m]!];
        i = m;
      }
    }
    return top;
  }
}

interface Shard {
  busyUntil: number;
  /** Finish times of admitted hellos; those before `head` are done. */
  queue: number[];
  head: number;
  sockets: number;
}

export function simulate(m: Model, random: () => number): Outcome {
  const shards: Shard[] = Array.from({ length: m.shards }, () => ({ busyUntil: 0, queue: [], head: 0, sockets: 0 }));
  const tries = new Heap();
  for (let i = 0; i < m.agents; i++) tries.push({ at: reconnectDelay(0, { ...CONTROL_RECONNECT, random }), agent: i });
  let refusals = 0;
  let admitted = 0;
  let lastAdmitted = 0;
  const meshWork = new Map<number, number>();
  const addMeshWork = (at: number, ms: number) =>
    meshWork.set(Math.floor(at / 1000), (meshWork.get(Math.floor(at / 1000)) ?? 0) + ms);
  const batches = new Map<string, number>();
  for (let t = tries.pop(); t; t = tries.pop()) {
    const shard = shards[t.agent % m.shards]!;
    // Requests the shard has finished by now leave its queue.
    while (shard.head < shard.queue.length && shard.queue[shard.head]! <= t.at) shard.head++;
    if (shard.queue.length - shard.head >= m.maxQueue || shard.sockets >= m.maxSockets) {
      refusals++;
      if (shard.sockets >= m.maxSockets) continue; // never fits: retrying cannot help
      tries.push({ at: t.at + Math.max(1, reconnectDelay(t.at, { ...CONTROL_RECONNECT, random })), agent: t.agent });
      continue;
    }
    const start = Math.max(t.at, shard.busyUntil);
    shard.busyUntil = start + m.helloMs;
    shard.queue.push(shard.busyUntil);
    shard.sockets++;
    admitted++;
    if (m.shards === 1) {
      addMeshWork(start, m.helloMs);
      lastAdmitted = Math.max(lastAdmitted, shard.busyUntil);
    } else {
      // The node rides in its shard's next batch to the Mesh object.
      const key = `${t.agent % m.shards}:${Math.ceil(shard.busyUntil / m.batchEveryMs) * m.batchEveryMs}`;
      batches.set(key, (batches.get(key) ?? 0) + 1);
    }
  }
  // The Mesh object takes the batches one at a time, in the order they are sent.
  const sent = [...batches]
    .map(([key, nodes]) => ({ at: Number(key.split(":")[1]), nodes }))
    .sort((a, b) => a.at - b.at);
  let meshBusyUntil = 0;
  for (const b of sent) {
    const cost = m.batchBaseMs + m.batchPerNodeMs * b.nodes;
    meshBusyUntil = Math.max(meshBusyUntil, b.at) + cost;
    addMeshWork(b.at, cost);
    lastAdmitted = Math.max(lastAdmitted, meshBusyUntil);
  }
  return {
    allBackMs: admitted === m.agents ? lastAdmitted : Number.NaN,
    admitted,
    refusals,
    meshBusiestSecondMs: Math.max(0, ...meshWork.values()),
  };
}

/** Cloudflare's limits and the hello cost measured here. */
export const CLOUDFLARE: Omit<Model, "agents" | "shards"> = {
  helloMs: 5,
  maxQueue: 1_000,
  maxSockets: 32_768,
  batchEveryMs: 100,
  batchBaseMs: 1,
  batchPerNodeMs: 0.05,
};

function main(): void {
  const rows = ["| agents | Mesh objects only (today) | 4 shards | 16 shards | 64 shards |", "|---|---|---|---|---|"];
  for (const agents of [1_000, 10_000, 30_000, 100_000]) {
    const cells = [1, 4, 16, 64].map((shards) => {
      const o = simulate({ ...CLOUDFLARE, agents, shards }, seeded(agents + shards));
      const back = Number.isNaN(o.allBackMs)
        ? `${o.admitted.toLocaleString("en")} fit`
        : `${(o.allBackMs / 1000).toFixed(1)} s`;
      return `${back}, Mesh object offered ${Math.round(o.meshBusiestSecondMs / 10)} % of a second at peak`;
    });
    rows.push(`| ${agents.toLocaleString("en")} | ${cells.join(" | ")} |`);
  }
  console.log(rows.join("\n"));
}

if (import.meta.url === `file://${process.argv[1]}`) main();
