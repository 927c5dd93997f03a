/**
 * Item 4: events ingested per second for an ansible-runner-like stream (test/e2e/fixtures/
 * runner-stream.mjs: status lines, N runner events, zip, eof), once with 10 SSE followers attached
 * from the start and once with none, alternated. Ingestion time is the broker's own: from the
 * first event's `time` (when the broker stored it) to the last's, so neither the command's start
 * nor the followers' reading is counted. Each follower checks it got every event, numbered 1…N+3
 * with no gap, in order; a stream that closes without its end record is resumed from the last id,
 * as EventSource would, and counted.
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
  resumes: number;
  /** When the broker stored the first and the last event (their `time`). */
  firstTime: number;
  lastTime: number;
}

/** Reads one unit's SSE stream to its end record, checking ids run 1, 2, 3, … without a gap. */
async function followEvents(env: BenchEnv, id: string): Promise<Followed> {
  const got: Followed = { events: 0, inOrder: true, endedAt: 0, resumes: -1, firstTime: 0, lastTime: 0 };
  let ended = false;
  while (!ended) {
    got.resumes++;
    const response = await request(`${env.broker.url}/v1/meshes/${MESH}/units/${id}/events`, {
      headers: { ...env.auth(), accept: "text/event-stream", "last-event-id": String(got.events) },
      bodyTimeout: 300_000,
    });
    if (response.statusCode !== 200)
      throw new Error(`events of ${id}: HTTP ${response.statusCode}: ${await response.body.text()}`);
    let tail = "";
    for await (const chunk of response.body as AsyncIterable<Buffer>) {
      const text = tail + chunk.toString();
      const cut = text.lastIndexOf("\n\n");
      if (cut === -1) {
        tail = text;
        continue;
      }
      tail = text.slice(cut + 2);
      for (const block of text.slice(0, cut).split("\n\n")) {
        if (block.startsWith("event: end")) ended = true;
        const match = /^id: (\d+)\n.*\ndata: (.*)$/s.exec(block);
        if (!match) continue;
        if (Number(match[1]) !== got.events + 1) got.inOrder = false;
        got.events = Number(match[1]);
        const time = Date.parse(/"time":"([^"]+)"/.exec(match[2]!)?.[1] ?? "");
        if (got.firstTime === 0) got.firstTime = time;
        got.lastTime = time;
      }
    }
  }
  got.endedAt = now();
  return got;
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
  // Without followers of its own, the run reads the stored times afterwards.
  const times = followed[0] ?? (await followEvents(env, id));
  const ingestSeconds = Math.max(times.lastTime - times.firstTime, 1) / 1000;
  return {
    resumes: followed.reduce((n, f) => n + f.resumes, 0),
    ingestSeconds,
    bytes: unit.stdoutSize,
    followers: followed,
    lastFollowerSeconds: followed.length ? (Math.max(...followed.map((f) => f.endedAt)) - submitted) / 1000 : null,
  };
}

export async function eventRate(env: BenchEnv, events: number, runs: number): Promise<Row> {
  const agent = await env.startAgent(MESH, [
    `{worktype: runner-stream, command: ${process.execPath}, params: ${GENERATOR}, allowruntimeparams: true}`,
  ]);
  const alone: number[] = [];
  const followed: number[] = [];
  let delivered = 0;
  let expectedDeliveries = 0;
  let allInOrder = true;
  let lastFollower: number[] = [];
  let bytes = 0;
  let resumes = 0;
  try {
    await run(env, 1000, 1); // warm-up, unmeasured
    for (let i = 0; i < runs; i++) {
      const quiet = await run(env, events, 0);
      alone.push(events / quiet.ingestSeconds);
      const busy = await run(env, events, FOLLOWERS);
      followed.push(events / busy.ingestSeconds);
      bytes = busy.bytes;
      resumes += busy.resumes;
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
      `${none ? "none dropped, all in order" : "**events missing or out of order**"} (${resumes} resumes after a closed stream); last follower done ${round(median(lastFollower))} s after submit`,
    comparedWith: `${Math.round(median(alone)).toLocaleString("en")} events/s with no follower (ratio ${round(rate / median(alone), 2)})`,
    goal: "≥ 20,000 events/s, none dropped",
    met: rate >= 20_000 && none,
    headline: { value: rate, unit: "events/s" },
    data: {
      events,
      runs,
      resumes,
      ratePerSecond: followed,
      ratePerSecondAlone: alone,
      delivered,
      expectedDeliveries,
      allInOrder,
      lastFollowerSeconds: lastFollower,
    },
  };
}
