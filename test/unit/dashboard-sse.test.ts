/** The dashboard's server-sent events parser, and its stream follower's reconnects and backoff. */
import { afterEach, describe, expect, it, vi } from "vitest";
import { SseParser } from "../../broker/dashboard/sse.js";
import { backoffMs, followStream } from "../../broker/dashboard/stream.js";

describe("SseParser", () => {
  it("parses the broker's framing: id, event, JSON data", () => {
    const p = new SseParser();
    const events = p.push('id: 1\nevent: line\ndata: {"seq":1}\n\nid: 2\nevent: end\ndata: {"state":"Succeeded"}\n\n');
    expect(events).toEqual([
      { type: "line", data: '{"seq":1}', id: "1" },
      { type: "end", data: '{"state":"Succeeded"}', id: "2" },
    ]);
    expect(p.lastEventId).toBe("2");
  });

  it("joins data lines, defaults the type to message and ignores comments", () => {
    const p = new SseParser();
    expect(p.push(": keepalive\n\ndata: a\ndata:b\ndata\n\n")).toEqual([{ type: "message", data: "a\nb\n", id: "" }]);
  });

  it("gives the same events however the text is cut, with LF, CR or CRLF line ends", () => {
    const text =
      "id: 7\r\nevent: event\r\ndata: x\r\n\r\nid: 8\revent: status\rdata: y\r\rid: 9\nevent: line\ndata: z\n\n";
    const whole = new SseParser().push(text);
    expect(whole.map((e) => `${e.id}/${e.type}/${e.data}`)).toEqual(["7/event/x", "8/status/y", "9/line/z"]);
    for (let size = 1; size <= 5; size++) {
      const p = new SseParser();
      const events = [];
      for (let i = 0; i < text.length; i += size) events.push(...p.push(text.slice(i, i + size)));
      expect(events).toEqual(whole);
    }
  });

  it("keeps the last id even from an event without data, and reads retry", () => {
    const p = new SseParser();
    expect(p.push("id: 41\nretry: 3000\n\n")).toEqual([]);
    expect(p.lastEventId).toBe("41");
    expect(p.retryMs).toBe(3000);
    p.push("retry: soon\n\n");
    expect(p.retryMs).toBe(3000);
  });

  it("holds a half line until its end arrives", () => {
    const p = new SseParser();
    expect(p.push("data: hel")).toEqual([]);
    expect(p.push("lo\n")).toEqual([]);
    expect(p.push("\n")).toEqual([{ type: "message", data: "hello", id: "" }]);
  });
});

describe("backoffMs", () => {
  it("doubles from 250-500 ms up to 5-10 s", () => {
    expect(backoffMs(0, 0)).toBe(250);
    expect(backoffMs(0, 1)).toBe(500);
    expect(backoffMs(3, 1)).toBe(4000);
    expect(backoffMs(10, 0)).toBe(5000);
    expect(backoffMs(10, 1)).toBe(10_000);
  });
});

describe("followStream", () => {
  afterEach(() => {
    vi.unstubAllGlobals();
  });

  /** A fetch that answers each call with the next of `answers`, recording the request headers. */
  function fakeFetch(answers: (() => Response)[]) {
    const calls: Record<string, string>[] = [];
    vi.stubGlobal("fetch", async (_url: string, init: { headers: Record<string, string> }) => {
      calls.push(init.headers);
      const next = answers.shift();
      if (!next) throw new Error("no more answers");
      return next();
    });
    return calls;
  }

  const sse = (text: string) => () => new Response(text, { headers: { "content-type": "text/event-stream" } });

  it("resumes after a drop with Last-Event-ID and stops at the end event", async () => {
    const calls = fakeFetch([
      sse("id: 1\nevent: line\ndata: a\n\nid: 2\nevent: line\ndata: b\n\n"),
      sse("id: 3\nevent: line\ndata: c\n\nevent: end\ndata: {}\n\n"),
    ]);
    const seen: string[] = [];
    const states: string[] = [];
    await followStream({
      url: "/events",
      token: "mtk_x",
      signal: new AbortController().signal,
      onEvent: (e) => seen.push(`${e.type}:${e.data}`),
      onState: (s) => states.push(s),
    });
    expect(seen).toEqual(["line:a", "line:b", "line:c", "end:{}"]);
    expect(states).toEqual(["open", "retrying", "open", "ended"]);
    expect(calls[0]).toMatchObject({ accept: "text/event-stream", authorization: "Bearer mtk_x" });
    expect(calls[0]?.["last-event-id"]).toBeUndefined();
    expect(calls[1]?.["last-event-id"]).toBe("2");
  });

  it("gives up on an answer that retrying cannot fix, with the broker's message", async () => {
    fakeFetch([() => Response.json({ error: { code: "unauthorized", message: "unknown token" } }, { status: 401 })]);
    const states: string[] = [];
    await followStream({
      url: "/events",
      token: "t",
      signal: new AbortController().signal,
      onEvent: () => {},
      onState: (s, d) => states.push(`${s} ${d}`),
    });
    expect(states).toEqual(["failed unauthorized: unknown token"]);
  });

  it("retries server errors and network failures until aborted", async () => {
    const abort = new AbortController();
    fakeFetch([
      () => new Response("oops", { status: 502 }),
      () => {
        throw new TypeError("network down");
      },
      () => {
        abort.abort();
        throw new DOMException("aborted", "AbortError");
      },
    ]);
    const states: string[] = [];
    await followStream({
      url: "/events",
      token: "t",
      signal: abort.signal,
      onEvent: () => {},
      onState: (s, d) => states.push(`${s} ${d}`),
    });
    expect(states).toEqual(["retrying http_error: HTTP 502", "retrying network down"]);
  });
});
