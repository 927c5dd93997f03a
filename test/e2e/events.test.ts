/** Unit and mesh events: SSE with resume, JSON pages, slow and fast followers, redaction. */
import { join } from "node:path";
import { request } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ROOT } from "../../scripts/local-broker.js";
import {
  type RunningAgent,
  api,
  broker,
  createToken,
  newMesh,
  startAgent,
  submitScript,
  waitFinished,
  waitFor,
} from "./harness.js";

const mesh = newMesh();
const GENERATOR = join(ROOT, "test/e2e/fixtures/runner-stream.mjs");
let agent: RunningAgent;
let readToken: string;

interface SseMessage {
  id: string | null;
  event: string;
  data: string;
}

interface UnitEvent {
  seq: number;
  kind: string;
  stdout?: string;
  status?: string;
  event?: string;
  counter?: number;
  host?: string;
  data?: Record<string, unknown>;
}

/** Reads an SSE stream to its end; `pause` ms after each chunk makes a deliberately slow reader. */
async function readSse(
  path: string,
  options: { token?: string; lastEventId?: string; pause?: number; until?: (m: SseMessage) => boolean } = {},
) {
  const { url, token } = broker();
  const response = await request(`${url}/v1/meshes/${mesh}${path}`, {
    headers: {
      authorization: `Bearer ${options.token ?? token}`,
      accept: "text/event-stream",
      ...(options.lastEventId ? { "last-event-id": options.lastEventId } : {}),
    },
  });
  expect(response.statusCode).toBe(200);
  expect(response.headers["content-type"]).toMatch(/^text\/event-stream/);
  const messages: SseMessage[] = [];
  const comments: string[] = [];
  let buffer = "";
  const decoder = new TextDecoder();
  for await (const chunk of response.body) {
    buffer += decoder.decode(chunk as Buffer, { stream: true });
    let cut = buffer.indexOf("\n\n");
    while (cut !== -1) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      const message: SseMessage = { id: null, event: "message", data: "" };
      let hasData = false;
      for (const line of block.split("\n")) {
        if (line.startsWith(":")) comments.push(line);
        else if (line.startsWith("id: ")) message.id = line.slice(4);
        else if (line.startsWith("event: ")) message.event = line.slice(7);
        else if (line.startsWith("data: ")) {
          message.data += line.slice(6);
          hasData = true;
        }
      }
      if (hasData) messages.push(message);
      if (hasData && options.until?.(message)) {
        response.body.destroy();
        return { messages, comments };
      }
      cut = buffer.indexOf("\n\n");
    }
    if (options.pause) await new Promise((r) => setTimeout(r, options.pause));
  }
  return { messages, comments };
}

const eventsOf = (messages: SseMessage[]) =>
  messages.filter((m) => m.event !== "end").map((m) => JSON.parse(m.data) as UnitEvent);

beforeAll(async () => {
  agent = await startAgent({
    mesh,
    nodeId: "eventful",
    config: `- work-command: {worktype: sh, command: sh, params: "-c", allowruntimeparams: true}\n`,
  });
  readToken = (await createToken(mesh, "read", { name: "dashboard" })).token;
});

afterAll(async () => {
  await agent.stop();
});

describe("unit events", () => {
  it("a slow and a fast SSE follower both receive every event of a 10,000-event unit, in order; pages agree; resume gets exactly the rest", async () => {
    // Events arrive over about a second, in bursts, while both followers are attached.
    const unit = await submitScript(mesh, `node ${GENERATOR} 10000 500 40`);
    const [fast, slow] = await Promise.all([
      readSse(`/units/${unit.id}/events`),
      readSse(`/units/${unit.id}/events`, { pause: 25 }),
    ]);
    const record = await waitFinished(mesh, unit.id);
    expect(record.state).toBe("Succeeded");
    for (const stream of [fast, slow]) {
      const events = eventsOf(stream.messages);
      // starting, running, 10,000 events, successful: the zip and eof are not events.
      expect(events).toHaveLength(10_003);
      expect(events.map((e) => e.seq)).toEqual(Array.from({ length: 10_003 }, (_, i) => i + 1));
      expect(stream.messages.slice(0, -1).map((m) => Number(m.id))).toEqual(events.map((e) => e.seq));
      expect(events.filter((e) => e.kind === "event").map((e) => e.counter)).toEqual(
        Array.from({ length: 10_000 }, (_, i) => i + 1),
      );
      expect(events.map((e) => e.status).filter(Boolean)).toEqual(["starting", "running", "successful"]);
      expect(stream.messages.at(-1)).toMatchObject({ event: "end" });
      expect(JSON.parse(stream.messages.at(-1)!.data)).toMatchObject({ state: "Succeeded", exitCode: 0 });
    }
    expect(slow.messages.map((m) => m.data)).toEqual(fast.messages.map((m) => m.data));
    const all = eventsOf(fast.messages);
    expect(all[5]).toMatchObject({
      kind: "event",
      event: "runner_on_ok",
      counter: 4,
      host: "host0",
      stdout: "\u001b[0;33mchanged: [host0]\u001b[0m event 4",
    });
    expect(all.at(-2)?.data).toMatchObject({ event: "playbook_on_stats", event_data: { ok: { host0: 1, host1: 2 } } });

    // Resume mid-stream: exactly the events after 5,000, then the end.
    const resumed = await readSse(`/units/${unit.id}/events`, { lastEventId: "5000" });
    expect(eventsOf(resumed.messages).map((e) => e.seq)).toEqual(Array.from({ length: 5003 }, (_, i) => i + 5001));
    expect(resumed.messages.map((m) => m.data)).toEqual(fast.messages.slice(5000).map((m) => m.data));

    // JSON pages for pollers agree with the SSE stream, event for event.
    const paged: string[] = [];
    let after = 0;
    for (;;) {
      const { url, token } = broker();
      const page = await request(`${url}/v1/meshes/${mesh}/units/${unit.id}/events?after=${after}&limit=1000`, {
        headers: { authorization: `Bearer ${token}` },
      });
      const text = await page.body.text();
      const body = JSON.parse(text) as { events: unknown[]; last: number; done: boolean; state: string };
      paged.push(...body.events.map((e) => JSON.stringify(e)));
      after = body.last;
      if (body.done) break;
      expect(body.events.length).toBe(1000);
    }
    expect(paged).toEqual(fast.messages.slice(0, -1).map((m) => JSON.stringify(JSON.parse(m.data))));
  });

  it("a JSON page read while the unit ran is not served again once more events exist", async () => {
    const unit = await submitScript(mesh, `node ${GENERATOR} 200 50 300`);
    let early: { events: UnitEvent[]; done: boolean } | undefined;
    await waitFor(async () => {
      early = (
        await api<{ events: UnitEvent[]; done: boolean }>(mesh, "GET", `/units/${unit.id}/events?after=0&limit=1000`)
      ).body;
      return early.events.length > 0;
    }, "the first events");
    expect(early?.done).toBe(false);
    await waitFinished(mesh, unit.id);
    const late = (
      await api<{ events: UnitEvent[]; done: boolean }>(mesh, "GET", `/units/${unit.id}/events?after=0&limit=1000`)
    ).body;
    expect(late.events.map((e) => e.seq)).toEqual(Array.from({ length: 203 }, (_, i) => i + 1));
    expect(late.done).toBe(true);
  });

  it("masks the worker's environment for a read token, not for a submitter", async () => {
    const unit = await submitScript(mesh, `node ${GENERATOR} 3`);
    await waitFinished(mesh, unit.id);
    const asRead = (
      await api<{ events: UnitEvent[] }>(mesh, "GET", `/units/${unit.id}/events?limit=1`, { token: readToken })
    ).body.events[0];
    const asAdmin = (await api<{ events: UnitEvent[] }>(mesh, "GET", `/units/${unit.id}/events?limit=1`)).body
      .events[0];
    expect(asAdmin?.data?.env).toEqual({ MESH_SECRET: "hunter2", HOME: "/root" });
    expect(asRead?.data?.env).toEqual({ MESH_SECRET: "********", HOME: "********" });
    const stream = await readSse(`/units/${unit.id}/events`, { token: readToken });
    expect(stream.messages.map((m) => m.data).join("\n")).not.toContain("hunter2");
  });

  it("other output becomes line events holding whole lines, the last one unterminated too", async () => {
    const unit = await submitScript(mesh, "printf 'one\\ntwo\\n'; sleep 0.3; printf 'three\\nfour'");
    const { messages } = await readSse(`/units/${unit.id}/events`);
    const events = eventsOf(messages);
    expect(events.every((e) => e.kind === "line")).toBe(true);
    expect(events.map((e) => e.stdout).join("\n")).toBe("one\ntwo\nthree\nfour");
    expect(events.length).toBeGreaterThanOrEqual(2);
  });

  it("refuses a malformed Last-Event-ID, an unknown unit and a released one with a clear error", async () => {
    const bad = await api<{ error: { code: string } }>(mesh, "GET", "/units/AAAAAAAA/events?after=x");
    expect(bad.status).toBe(400);
    expect(bad.body.error.code).toBe("bad_request");
    const unknown = await api<{ error: { code: string } }>(mesh, "GET", "/units/AAAAAAAA/events");
    expect(unknown.status).toBe(404);
    expect(unknown.body.error.code).toBe("unknown_unit");
    const unit = await submitScript(mesh, "echo done");
    await waitFinished(mesh, unit.id);
    expect((await api(mesh, "DELETE", `/units/${unit.id}`)).status).toBe(200);
    const gone = await api<{ error: { code: string } }>(mesh, "GET", `/units/${unit.id}/events`);
    expect(gone.status).toBe(410);
    expect(gone.body.error.code).toBe("unit_released");
  });
});

describe("mesh events", () => {
  it("tell a dashboard about node joins and each unit's state changes, and resume from Last-Event-ID", async () => {
    const before = await api<{ last: number }>(mesh, "GET", "/events?after=0&limit=1000", { token: readToken });
    const start = before.body.last;
    const unit = await submitScript(mesh, "echo hi");
    await waitFinished(mesh, unit.id);
    const isDone = (m: SseMessage) =>
      m.event === "unit" && JSON.parse(m.data).id === unit.id && JSON.parse(m.data).state === "Succeeded";
    const stream = await readSse("/events", { token: readToken, lastEventId: String(start), until: isDone });
    const mine = stream.messages.map((m) => JSON.parse(m.data)).filter((e) => e.id === unit.id);
    expect(mine.map((e) => e.state)).toEqual(["Pending", "Pending", "Pending", "Running", "Succeeded"]);
    expect(mine[2]).toMatchObject({ node: "eventful", detail: "assigned to eventful", worktype: "sh" });
    expect(stream.messages.map((m) => Number(m.id))).toEqual(
      Array.from({ length: stream.messages.length }, (_, i) => start + 1 + i),
    );

    const history = await api<{ events: { kind: string; nodeId?: string; change?: string }[] }>(
      mesh,
      "GET",
      "/events?after=0&limit=5",
      { token: readToken },
    );
    expect(history.body.events.some((e) => e.kind === "node" && e.nodeId === "eventful" && e.change === "joined")).toBe(
      true,
    );
  });

  it("after=latest starts at the newest event, while a reconnect's Last-Event-ID still resumes", async () => {
    const newest = (await api<{ last: number }>(mesh, "GET", "/events?after=0&limit=1000", { token: readToken })).body
      .last;
    const fromNow = await api<{ events: unknown[]; last: number }>(mesh, "GET", "/events?after=latest", {
      token: readToken,
    });
    expect(fromNow.body).toMatchObject({ events: [], last: newest });
    const resumed = await api<{ events: { seq: number }[] }>(mesh, "GET", "/events?after=latest&limit=2", {
      token: readToken,
      headers: { "last-event-id": "1" },
    });
    expect(resumed.body.events.map((e) => e.seq)).toEqual([2, 3]);
    expect((await api(mesh, "GET", "/events?after=soon", { token: readToken })).status).toBe(400);
  });

  it("whoami tells a dashboard what the token may do", async () => {
    const read = await api<{ role: string; may: Record<string, boolean> }>(mesh, "GET", "/whoami", {
      token: readToken,
    });
    expect(read.body).toMatchObject({
      kind: "token",
      role: "read",
      may: { read: true, results: false, submit: false, manage: false },
    });
    const admin = await api<{ role: string; may: Record<string, boolean> }>(mesh, "GET", "/whoami");
    expect(admin.body.may).toEqual({ read: true, results: true, submit: true, manage: true });
  });
});
