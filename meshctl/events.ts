/**
 * `meshctl work events`: a unit's events as JSON lines, for scripts and jq.
 *
 * Without follow, JSON pages up to the events there are now. With follow, one Server-Sent Events
 * stream until the broker's `end` record: the broker pushes each event as it is stored (a poller
 * would wake the Unit object every interval for hours of a quiet playbook, and lag by up to one),
 * and its keepalive comments let a silent link be told from a quiet unit. A dropped stream is
 * reopened with Last-Event-ID, so no event is lost or printed twice.
 */
import type { Writable } from "node:stream";
import { sleep } from "../shared/backoff.js";
import { Outage, type RidePolicy } from "./ride.js";

/** What printing events needs from the client (client.ts). */
export interface EventsClient {
  readonly ride: RidePolicy;
  get(
    path: string,
    options: { query?: Record<string, string | undefined>; headers?: Record<string, string>; signal?: AbortSignal },
  ): Promise<Response>;
}

export interface EventsPage {
  events: Array<{ seq: number }>;
  last: number;
  done: boolean;
}

const PAGE = 1000;
/** The broker sends a keepalive comment every 15 s (SSE_KEEPALIVE_MS); four missed mean the link is gone. */
const SILENT_MS = 60_000;

/** One SSE message: its `id:`, `event:` and `data:` fields. */
export interface SseMessage {
  id: string | null;
  event: string;
  data: string;
}

/**
 * Splits an SSE byte stream into messages (and reports comments, which are keepalives). Keeps
 * the unfinished tail between calls; lines end with LF, CRLF or CR, as the format allows.
 */
export class SseParser {
  private buffer = "";
  private readonly decoder = new TextDecoder();

  push(chunk: Uint8Array): { messages: SseMessage[]; comments: number } {
    this.buffer += this.decoder.decode(chunk, { stream: true });
    const blocks = this.buffer.split(/\r\n\r\n|\n\n|\r\r/);
    this.buffer = blocks.pop() ?? "";
    const messages: SseMessage[] = [];
    let comments = 0;
    for (const block of blocks) {
      const message: SseMessage = { id: null, event: "message", data: "" };
      let hasData = false;
      for (const line of block.split(/\r\n|\n|\r/)) {
        if (line.startsWith(":")) comments++;
        const colon = line.indexOf(":");
        const field = colon === -1 ? line : line.slice(0, colon);
        const value = colon === -1 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (field === "id") message.id = value;
        else if (field === "event") message.event = value;
        else if (field === "data") {
          message.data += hasData ? `\n${value}` : value;
          hasData = true;
        }
      }
      if (hasData) messages.push(message);
    }
    return { messages, comments };
  }
}

/** Prints each event as one line of compact JSON; with `follow`, until the unit has ended. */
export async function printEvents(
  client: EventsClient,
  id: string,
  out: Writable,
  options: { after: number; follow: boolean },
): Promise<void> {
  const path = `/units/${encodeURIComponent(id)}/events`;
  if (!options.follow) {
    for (let after = options.after; ; ) {
      const response = await client.get(path, { query: { after: String(after), limit: String(PAGE) } });
      const page = (await response.json()) as EventsPage;
      await write(out, page.events.map((e) => `${JSON.stringify(e)}\n`).join(""));
      // A page may be short for its size in bytes: only an empty page (or `done`) is the end.
      if (page.events.length === 0 || page.done) return;
      after = page.last;
    }
  }
  let last = options.after;
  const outage = new Outage(client.ride);
  for (let attempt = 0; ; attempt++) {
    const before = last;
    const idle = new AbortController();
    let timer = setTimeout(() => idle.abort(), SILENT_MS);
    try {
      const response = await client.get(path, {
        // The first request says where to start; a reconnect resumes after the last event printed.
        query: { after: attempt === 0 ? String(last) : undefined },
        headers: { accept: "text/event-stream", ...(attempt === 0 ? {} : { "last-event-id": String(last) }) },
        signal: idle.signal,
      });
      outage.reached();
      const parser = new SseParser();
      for await (const chunk of response.body ?? []) {
        clearTimeout(timer);
        timer = setTimeout(() => idle.abort(), SILENT_MS);
        const { messages } = parser.push(chunk);
        const lines: string[] = [];
        for (const message of messages) {
          if (message.event === "end") {
            await write(out, lines.join(""));
            return;
          }
          lines.push(`${JSON.stringify(JSON.parse(message.data))}\n`);
          if (message.id !== null) last = Number(message.id);
        }
        await write(out, lines.join(""));
      }
    } catch (error) {
      if (last > before) outage.reached();
      await outage.failed(error);
      continue;
    } finally {
      clearTimeout(timer);
    }
    // The stream ended without its end record (the broker restarting, say): reopen it where it stopped.
    await sleep(200);
  }
}

function write(out: Writable, text: string): Promise<void> {
  if (text === "" || out.write(text)) return Promise.resolve();
  return new Promise((resolve) => out.once("drain", resolve));
}
