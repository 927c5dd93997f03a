/** The dashboard's server-sent events parser and its reconnect backoff. */
import { describe, expect, it } from "vitest";
import { SseParser } from "../../broker/dashboard/sse.js";
import { backoffMs } from "../../broker/dashboard/stream.js";

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
    const text = "id: 7\r\nevent: event\r\ndata: x\r\n\r\nid: 8\revent: status\rdata: y\r\rid: 9\nevent: line\ndata: z\n\n";
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
