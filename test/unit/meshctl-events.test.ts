import { PassThrough } from "node:stream";
import { describe, expect, it } from "vitest";
import { MeshApiError } from "../../meshctl/client.js";
import { type EventsClient, SseParser, printEvents } from "../../meshctl/events.js";

const encoder = new TextEncoder();
const event = (seq: number) => `id: ${seq}\nevent: line\ndata: {"seq":${seq},"kind":"line","stdout":"l${seq}"}\n\n`;

/** A response whose body sends `parts`, then ends, or breaks off if `fail`. */
function sse(parts: string[], fail = false): Response {
  const queue = [...parts];
  const body = new ReadableStream<Uint8Array>({
    pull(controller) {
      const part = queue.shift();
      if (part !== undefined) controller.enqueue(encoder.encode(part));
      else if (fail) controller.error(new Error("connection reset"));
      else controller.close();
    },
  });
  return new Response(body, { headers: { "content-type": "text/event-stream" } });
}

/** A client answering each request with the next of `answers`, recording what it was asked. */
function fakeClient(answers: Array<Response | Error>, notices: string[] = []) {
  const asked: Array<{ query: Record<string, string | undefined>; headers: Record<string, string> }> = [];
  const client: EventsClient = {
    ride: { retryForMs: 60_000, notice: (m) => notices.push(m) },
    async get(_path, options) {
      asked.push({ query: options.query ?? {}, headers: options.headers ?? {} });
      const answer = answers.shift();
      if (!answer) throw new Error("no more answers");
      if (answer instanceof Error) throw answer;
      return answer;
    },
  };
  return { client, asked };
}

async function printed(client: EventsClient, options: { after: number; follow: boolean }): Promise<number[]> {
  const out = new PassThrough();
  let text = "";
  out.on("data", (d) => (text += d));
  await printEvents(client, "AAAAAAAA", out, options);
  return text
    .split("\n")
    .filter(Boolean)
    .map((l) => (JSON.parse(l) as { seq: number }).seq);
}

describe("SSE parsing", () => {
  it("splits messages across any chunking, counts comments and joins data lines", () => {
    const stream = `retry: 2000\n\n: keepalive\n\n${event(1)}id: 2\r\nevent: line\r\ndata: a\r\ndata: b\r\n\r\n${event(3)}`;
    for (const size of [1, 2, 5, 64, stream.length]) {
      const parser = new SseParser();
      const messages = [];
      let comments = 0;
      for (let i = 0; i < stream.length; i += size) {
        const step = parser.push(encoder.encode(stream.slice(i, i + size)));
        messages.push(...step.messages);
        comments += step.comments;
      }
      expect(messages.map((m) => m.id)).toEqual(["1", "2", "3"]);
      expect(messages[1]).toEqual({ id: "2", event: "line", data: "a\nb" });
      expect(comments).toBe(1);
    }
  });
});

describe("printEvents", () => {
  it("follows to the end record, resuming a dropped stream with Last-Event-ID, each event once", async () => {
    const { client, asked } = fakeClient([
      sse([event(1), event(2), "id: 3\nevent: li"], true),
      new MeshApiError("unreachable", "cannot reach the broker", 0),
      sse([event(3), event(4)]),
      sse([": keepalive\n\n", event(5), 'event: end\ndata: {"state":"Succeeded"}\n\n', event(6)]),
    ]);
    expect(await printed(client, { after: 0, follow: true })).toEqual([1, 2, 3, 4, 5]);
    expect(asked.map((a) => [a.query.after, a.headers["last-event-id"], a.headers.accept])).toEqual([
      ["0", undefined, "text/event-stream"],
      [undefined, "2", "text/event-stream"],
      [undefined, "2", "text/event-stream"],
      [undefined, "4", "text/event-stream"],
    ]);
  });

  it("a blip is ridden out without a word", async () => {
    const notices: string[] = [];
    const { client } = fakeClient(
      [new MeshApiError("unreachable", "cannot reach the broker", 0), sse([event(1), "event: end\ndata: {}\n\n"])],
      notices,
    );
    expect(await printed(client, { after: 0, follow: true })).toEqual([1]);
    expect(notices).toEqual([]);
  });

  it("gives up at once on the broker's refusal (an unknown or released unit)", async () => {
    const { client } = fakeClient([new MeshApiError("unit_released", "unit AAAAAAAA was released", 410)]);
    await expect(printed(client, { after: 0, follow: true })).rejects.toMatchObject({ code: "unit_released" });
  });

  it("without follow, pages from --after to the events there are now", async () => {
    const page = (from: number, count: number) =>
      Response.json({
        events: Array.from({ length: count }, (_, i) => ({ seq: from + i })),
        last: from + count - 1,
        done: false,
      });
    // A page may be short for its size in bytes: only an empty page ends the listing.
    const { client, asked } = fakeClient([
      page(6, 1000),
      page(1006, 2),
      Response.json({ events: [], last: 1007, done: false }),
    ]);
    const seqs = await printed(client, { after: 5, follow: false });
    expect(seqs).toEqual(Array.from({ length: 1002 }, (_, i) => i + 6));
    expect(asked.map((a) => a.query.after)).toEqual(["5", "1005", "1007"]);
  });
});
