import { describe, expect, it } from "vitest";
import {
  type Feed,
  type FeedEvent,
  PAGE_BYTES,
  PageCache,
  fillPage,
  jsonPage,
  renderEvent,
  resumePoint,
  sseStream,
} from "../../broker/feed.js";

/** An in-memory feed: `push` appends and wakes waiters, `finish` sets the end record. */
function memoryFeed() {
  const events: FeedEvent[] = [];
  const waiters = new Set<() => void>();
  let end: string | null = null;
  const wake = () => {
    for (const w of [...waiters]) w();
  };
  const feed: Feed = {
    page: (after, limit) => events.filter((e) => e.seq > after).slice(0, limit),
    lastSeq: () => events.length,
    end: () => end,
    changed: (signal) =>
      new Promise<void>((resolve) => {
        const done = () => {
          waiters.delete(done);
          resolve();
        };
        waiters.add(done);
        signal.addEventListener("abort", done);
      }),
  };
  return {
    feed,
    waiters,
    push(kind: string) {
      const seq = events.length + 1;
      events.push({ seq, kind, json: renderEvent(seq, kind, 0, `{"n":${seq}}`) });
      wake();
    },
    finish() {
      end = '{"state":"Succeeded"}';
      wake();
    },
  };
}

async function readAll(stream: ReadableStream<Uint8Array>): Promise<string> {
  return new Response(stream).text();
}

describe("event feeds", () => {
  it("render events with seq, kind, time and the stored fields", () => {
    expect(renderEvent(3, "unit", 0, '{"id":"a"}')).toBe(
      '{"seq":3,"kind":"unit","time":"1970-01-01T00:00:00.000Z","id":"a"}',
    );
    expect(renderEvent(1, "line", 0, "{}", ',"data":{}')).toBe(
      '{"seq":1,"kind":"line","time":"1970-01-01T00:00:00.000Z","data":{}}',
    );
  });

  it("resume from a reconnect's Last-Event-ID, else ?after, else the start; refuse anything but a number", () => {
    expect(resumePoint(null, null)).toBe(0);
    // EventSource reconnects to the URL it was opened with: the header must win over its ?after.
    expect(resumePoint("5", "9")).toBe(9);
    expect(resumePoint("5", null)).toBe(5);
    expect(resumePoint(null, " 9 ")).toBe(9);
    for (const bad of ["-1", "x", "1e3", "", "12345678901234567"]) expect(resumePoint(bad, null)).toBeNull();
  });

  it("stream SSE frames with ids, wait for new events, and close after the end record", async () => {
    const m = memoryFeed();
    m.push("status");
    const text = readAll(sseStream(m.feed, 0, 60_000));
    await new Promise((r) => setTimeout(r, 20));
    m.push("event");
    m.finish();
    const body = await text;
    expect(body).toBe(
      [
        "retry: 2000\n\n",
        `id: 1\nevent: status\ndata: ${renderEvent(1, "status", 0, '{"n":1}')}\n\n`,
        `id: 2\nevent: event\ndata: ${renderEvent(2, "event", 0, '{"n":2}')}\n\n`,
        'event: end\ndata: {"state":"Succeeded"}\n\n',
      ].join(""),
    );
    expect(m.waiters.size).toBe(0);
  });

  it("sends keepalive comments while idle and withdraws each wait, so idle followers leave no waiters behind", async () => {
    const m = memoryFeed();
    const reader = sseStream(m.feed, 0, 5).getReader();
    const decoder = new TextDecoder();
    expect(decoder.decode((await reader.read()).value)).toBe("retry: 2000\n\n");
    for (let i = 0; i < 3; i++) expect(decoder.decode((await reader.read()).value)).toBe(": keepalive\n\n");
    expect(m.waiters.size).toBe(0);
    m.push("line");
    expect(decoder.decode((await reader.read()).value)).toContain("id: 1\n");
    await reader.cancel();
  });

  it("cancelling a waiting follower releases its wait at once", async () => {
    const m = memoryFeed();
    const reader = sseStream(m.feed, 0, 60_000).getReader();
    await reader.read();
    const pending = reader.read();
    await new Promise((r) => setTimeout(r, 10));
    expect(m.waiters.size).toBe(1);
    await reader.cancel();
    await pending.catch(() => undefined);
    expect(m.waiters.size).toBe(0);
  });

  it("JSON pages: `last` is where to resume, `done` only once the end record is set and the page is short", () => {
    const m = memoryFeed();
    for (let i = 0; i < 5; i++) m.push("line");
    const first = JSON.parse(jsonPage(m.feed, 0, 3, { state: "Running" }));
    expect(first.events.map((e: { seq: number }) => e.seq)).toEqual([1, 2, 3]);
    expect(first).toMatchObject({ last: 3, done: false, state: "Running" });
    expect(JSON.parse(jsonPage(m.feed, 3, 3, {}))).toMatchObject({ last: 5, done: false });
    m.finish();
    expect(JSON.parse(jsonPage(m.feed, 3, 3, {}))).toMatchObject({ last: 5, done: true });
    expect(JSON.parse(jsonPage(m.feed, 5, 3, {}))).toMatchObject({ events: [], last: 5, done: true });
    // A limit past the page size is clamped, and `done` judged against what was really asked.
    for (let i = 0; i < 1005; i++) m.push("line");
    expect(JSON.parse(jsonPage(m.feed, 0, 5000, {}))).toMatchObject({ last: 1000, done: false });
  });

  it("fill a page up to PAGE_BYTES of JSON, but always with one event", () => {
    const big = (seq: number): FeedEvent => ({ seq, kind: "line", json: "x".repeat(PAGE_BYTES / 2) });
    expect(fillPage([1, 2, 3, 4], big).map((e) => e.seq)).toEqual([1, 2]);
    expect(fillPage([1], (seq) => ({ seq, kind: "line", json: "x".repeat(PAGE_BYTES * 3) }))).toHaveLength(1);
  });

  it("cache pages by key within a character budget, and never a page bigger than a quarter of it", () => {
    const cache = new PageCache(4000);
    let renders = 0;
    const page = (chars: number) => () => {
      renders++;
      return [{ seq: 1, kind: "line", json: "x".repeat(chars) }];
    };
    cache.get("a", page(900));
    cache.get("a", page(900));
    expect(renders).toBe(1);
    for (const key of ["b", "c", "d", "e"]) cache.get(key, page(900));
    cache.get("a", page(900));
    expect(renders).toBe(6); // "a" was evicted to stay within 4000 characters
    cache.get("huge", page(1500));
    cache.get("huge", page(1500));
    expect(renders).toBe(8);
  });

  it("tell a reader resuming from before the kept window that it missed events", async () => {
    const m = memoryFeed();
    for (let i = 0; i < 10; i++) m.push("unit");
    const trimmed: Feed = {
      ...m.feed,
      firstSeq: () => 6,
      page: (after, limit) => m.feed.page(Math.max(after, 5), limit),
    };
    expect(JSON.parse(jsonPage(trimmed, 2, 100, {}))).toMatchObject({ gap: { after: 2, oldest: 6 }, last: 10 });
    expect(JSON.parse(jsonPage(trimmed, 5, 100, {})).gap).toBeUndefined();
    expect(JSON.parse(jsonPage(trimmed, 0, 100, {})).gap).toBeUndefined();
    const reader = sseStream(trimmed, 2, 60_000).getReader();
    const decoder = new TextDecoder();
    expect(decoder.decode((await reader.read()).value)).toBe("retry: 2000\n\n");
    expect(decoder.decode((await reader.read()).value)).toBe('event: gap\ndata: {"after":2,"oldest":6}\n\n');
    expect(decoder.decode((await reader.read()).value)).toContain("id: 6\n");
    await reader.cancel();
  });
});
