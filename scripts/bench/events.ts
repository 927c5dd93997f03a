/**
 * Item 4: events ingested per second for an ansible-runner-like stream (test/e2e/fixtures/
 * runner-stream.mjs: status lines, N runner events, zip, eof), once with 10 SSE followers attached
 * from the start and once with none, alternated. Ingestion time is the broker's own: the unit's
 * startedAt → finishedAt, and a unit finishes only once every results frame (and so every event)
 * is committed. Each follower checks it got every event, numbered 1…N+3 with no gap, in order.
 */
import { join } from "node:path";
import { request } from "undici";
import { ROOT } from "../local-broker.js";
import type { BenchEnv } from "./env.js";
import type { Row } from "./report.js";
import { median, round } from "./stats.js";
import { now, submit, unitState } from "./units.js";

const MESH = "bench-events";
const GENERATOR = join(ROOT, "test/e2e/fixtures/runner-stream.mjs");
const FOLLOWERS = 10;

interface Followed {
  events: number;
  inOrder: boolean;
  endedAt: number;
}

/** Reads one unit's SSE stream to its end record, checking ids run 1, 2, 3, … without a gap. */
async function followEvents(env: BenchEnv, id: string): Promise<Followed> {
  const response = await request(`${env.broker.url}/v1/meshes/${MESH}/units/${id}/events`, {
    headers: { ...env.auth(), accept: "text/event-stream" },
    bodyTimeout: 300_000,
  });
  if (response.statusCode !== 200) throw new Error(`events of ${id}: HTTP ${response.statusCode}: ${await response.body.text()}`);
  let expected = 1;
  let inOrder = true;
  let tail = "";
  for await (const chunk of response.body as AsyncIterable<Buffer>) {
    const text = tail + chunk.toString();
    const cut = text.lastIndexOf("\n");
    tail = text.slice(cut + 1);
    for (const match of text.slice(0, cut).matchAll(/^id: (\d+)$/gm)) {
      if (Number(match[1]) !== expected) inOrder = false;
      expected++;
    }
  }
  return { events: expected - 1, inOrder, endedAt: now() };
}

async function run(env: BenchEnv, events: number, followers: number) {
  const id = await submit(env, MESH, "runner-stream", { params: String(events) });
  const submitted = now();
  const followed = await Promise.all(Array.from({ length: followers }, () => followEvents(env, id)));
  let unit = await unitState(env, MESH, id);
  while (!["Succeeded", "Failed", "Canceled"].includes(unit.state)) {
    await new Promise((r) => setTimeout(r, 50));
    unit = await unitState(env, MESH, id);
  }
  if (unit.state !== "Succeeded") throw new Error(`unit ${id} ended ${unit.state}: ${unit.detail}`);
  const ingestSeconds = (Date.parse(unit.finishedAt!) - Date.parse(unit.startedAt!)) / 1000;
  return {
    ingestSeconds,
    bytes: unit.stdoutSize,
    followers: followed,
    lastFollowerSeconds: followed.length ? (Math.max(...followed.map((f) => f.endedAt)) - submitted) / 1000 : null,
  };
}

export async function eventRate(env: BenchEnv, events: number, runs: number): Promise<Row> {
  const agent = await env.startAgent(MESH, [`{worktype: runner-stream, command: ${process.execPath}, params: ${GENERATOR}, allowruntimeparams: true}`]);
  const alone: number[] = [];
  const followed: number[] = [];
  let delivered = 0;
  let expectedDeliveries = 0;
  let allInOrder = true;
  let lastFollower: number[] = [];
  let bytes = 0;
  try {
    await run(env, 1000, 1); // warm-up, unmeasured
    for (let i = 0; i < runs; i++) {
      const quiet = await run(env, events, 0);
      alone.push(events / quiet.ingestSeconds);
      const busy = await run(env, events, FOLLOWERS);
      followed.push(events / busy.ingestSeconds);
      bytes = busy.bytes;
      for (const f of busy.followers) {
        delivered += f.events;
        allInOrder &&= f.inOrder;
      }
      expectedDeliveries += FOLLOWERS * (events + 3);
      lastFollower = [...lastFollower, busy.lastFollowerSeconds ?? 0];
    }
  } finally {
    await agent.stop();
  }
  const rate = median(followed);
  const none = delivered === expectedDeliveries && allInOrder;
  return {
    item: 4,
    measure: `events ingested per second: ${events.toLocaleString("en")} runner events (${round(bytes / 2 ** 20)} MiB), ${FOLLOWERS} SSE followers, median of ${runs}`,
    result:
      `${Math.round(rate).toLocaleString("en")} events/s with ${FOLLOWERS} followers; ${delivered.toLocaleString("en")} of ${expectedDeliveries.toLocaleString("en")} deliveries, ` +
      `${none ? "none dropped, all in order" : "**events missing or out of order**"}; last follower done ${round(median(lastFollower))} s after submit`,
    comparedWith: `${Math.round(median(alone)).toLocaleString("en")} events/s with no follower (ratio ${round(rate / median(alone), 2)})`,
    goal: "≥ 20,000 events/s, none dropped",
    met: rate >= 20_000 && none,
    data: { events, runs, ratePerSecond: followed, ratePerSecondAlone: alone, delivered, expectedDeliveries, allInOrder, lastFollowerSeconds: lastFollower },
  };
}
