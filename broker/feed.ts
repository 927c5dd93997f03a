/**
 * Serving a numbered event log to followers, as Server-Sent Events or as JSON pages. Both Unit
 * and Mesh objects keep their events in SQLite; a follower pulls pages from storage at its own
 * pace, so a slow reader holds no buffer, never slows ingestion, and never misses an event.
 */

export interface FeedEvent {
  seq: number;
  kind: string;
  /** The event as one line of JSON. */
  json: string;
}

export interface Feed {
  /** Events with seq > after, in order, at most `limit` (fewer past PAGE_BYTES; never none while some follow). */
  page(after: number, limit: number): FeedEvent[];
  /** The newest event's seq (0 when there is none). */
  lastSeq(): number;
  /** The oldest seq still kept, for logs that drop old events (the mesh's); absent: all are kept. */
  firstSeq?(): number;
  /** JSON of the closing record once no event will follow (the unit ended); null while open. */
  end(): string | null;
  /** Resolves at the next append or state change, or when `signal` aborts. */
  changed(signal: AbortSignal): Promise<void>;
}

export const PAGE_LIMIT = 1000;
/** A page stops growing past this much JSON, so a page of big events cannot exhaust the object's memory. */
export const PAGE_BYTES = 1024 * 1024;

/** Followers waiting for the next write: each wait ends at `wake()` or when its signal aborts. */
export class Waiters {
  private readonly waiting = new Set<() => void>();

  wait(signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      if (signal.aborted) return resolve();
      // A follower that goes away stops waiting at once instead of lingering until the next write.
      const done = () => {
        this.waiting.delete(done);
        signal.removeEventListener("abort", done);
        resolve();
      };
      this.waiting.add(done);
      signal.addEventListener("abort", done);
    });
  }

  wake(): void {
    for (const done of [...this.waiting]) done();
  }

  get size(): number {
    return this.waiting.size;
  }
}

/**
 * What a follower asks of an event feed, as the Worker passes it to the object holding the log:
 * `after` and `limit` from the query (checked by the Worker), `accept` and `lastEventId` from the
 * headers that choose SSE and resume it.
 */
export interface FeedQuery {
  after: string | null;
  limit: string | null;
  accept: string | null;
  lastEventId: string | null;
}

/** The answer to a feed request: SSE when the client accepts it, else one JSON page. */
export function feedResponse(
  feed: Feed,
  query: FeedQuery,
  after: number,
  keepaliveMs: number,
  extra: Record<string, unknown>,
): Response {
  if (wantsEventStream(query.accept))
    return new Response(sseStream(feed, after, keepaliveMs), { headers: SSE_HEADERS });
  const limit = Number(query.limit ?? 100);
  return new Response(jsonPage(feed, after, limit, extra), { headers: { "content-type": "application/json" } });
}

export function badResumePoint(): Response {
  return Response.json(
    { error: { code: "bad_request", message: "after / Last-Event-ID must be a non-negative integer" } },
    { status: 400 },
  );
}

/**
 * Recently rendered pages, shared by an object's followers: live followers are woken together and
 * ask for the same page, so it is rendered once rather than once per follower. Callers key a page
 * by the log's newest seq too, so a page that was short because the log was shorter is not served
 * once more events exist. Bounded by the characters it holds.
 */
export class PageCache {
  private readonly pages = new Map<string, { page: FeedEvent[]; chars: number }>();
  private chars = 0;

  constructor(private readonly maxChars = 8 * 1024 * 1024) {}

  get(key: string, render: () => FeedEvent[]): FeedEvent[] {
    const hit = this.pages.get(key);
    if (hit) return hit.page;
    const page = render();
    const chars = page.reduce((n, e) => n + e.json.length, 0);
    if (page.length === 0 || chars > this.maxChars / 4) return page;
    while (this.chars + chars > this.maxChars || this.pages.size >= 64) {
      const [oldest, entry] = this.pages.entries().next().value!;
      this.pages.delete(oldest);
      this.chars -= entry.chars;
    }
    this.pages.set(key, { page, chars });
    this.chars += chars;
    return page;
  }

  clear(): void {
    this.pages.clear();
    this.chars = 0;
  }
}

/** Renders events in order until `limit` of them or PAGE_BYTES of JSON (always at least one). */
export function fillPage<T>(rows: readonly T[], render: (row: T) => FeedEvent): FeedEvent[] {
  const page: FeedEvent[] = [];
  let chars = 0;
  for (const row of rows) {
    if (page.length > 0 && chars >= PAGE_BYTES) break;
    const event = render(row);
    page.push(event);
    chars += event.json.length;
  }
  return page;
}

const SSE_BATCH = 500;
const encoder = new TextEncoder();
/** SSE bytes of a page array; a page shared through PageCache is encoded once for all followers. */
const encodedPages = new WeakMap<FeedEvent[], Uint8Array>();

function ssePage(events: FeedEvent[]): Uint8Array {
  let bytes = encodedPages.get(events);
  if (!bytes) {
    bytes = encoder.encode(events.map((e) => `id: ${e.seq}\nevent: ${e.kind}\ndata: ${e.json}\n\n`).join(""));
    encodedPages.set(events, bytes);
  }
  return bytes;
}

/**
 * The start of an event log: the Last-Event-ID header of a reconnect wins over the `after` query
 * (EventSource resends the URL it was opened with, and must not replay from there).
 */
export function resumePoint(query: string | null, lastEventId: string | null): number | null {
  const raw = lastEventId ?? query ?? "0";
  return /^\d{1,15}$/.test(raw.trim()) ? Number(raw.trim()) : null;
}

/** `{"seq":…,"kind":…,"time":…, …fields}` from a stored `fields` object written as JSON. */
export function renderEvent(seq: number, kind: string, at: number, fields: string, tail = ""): string {
  const inner = fields.length > 2 ? `,${fields.slice(1, -1)}` : "";
  return `{"seq":${seq},"kind":${JSON.stringify(kind)},"time":"${new Date(at).toISOString()}"${inner}${tail}}`;
}

/**
 * Events a resuming reader can no longer get (dropped from a log that keeps only the newest): it
 * is told, as `gap` ({"after", "oldest"}), so it can reload what it shows rather than trust it.
 */
function missed(feed: Feed, after: number): { after: number; oldest: number } | null {
  const oldest = feed.firstSeq?.() ?? 1;
  return after > 0 && after < oldest - 1 ? { after, oldest } : null;
}

/** A JSON page for pollers: `done` says nothing will follow `last`. */
export function jsonPage(feed: Feed, after: number, limit: number, extra: Record<string, unknown>): string {
  const size = Math.min(Math.max(Number.isSafeInteger(limit) ? limit : 100, 1), PAGE_LIMIT);
  const events = feed.page(after, size);
  const last = events.at(-1)?.seq ?? after;
  const done = feed.end() !== null && last >= feed.lastSeq();
  const gap = missed(feed, after);
  const fields = Object.entries({ last, done, ...(gap ? { gap } : {}), ...extra })
    .map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v)}`)
    .join(",");
  return `{"events":[${events.map((e) => e.json).join(",")}],${fields}}`;
}

/**
 * An SSE stream from `after` on: `id:` is the event's seq (so EventSource resumes by itself),
 * `event:` its kind; a comment every `keepaliveMs` of silence keeps proxies from closing the
 * stream; `event: end` carries the final record before the stream closes.
 */
export function sseStream(feed: Feed, after: number, keepaliveMs: number): ReadableStream<Uint8Array> {
  let position = after;
  const gone = new AbortController();
  return new ReadableStream<Uint8Array>(
    {
      start(controller) {
        controller.enqueue(encoder.encode("retry: 2000\n\n"));
        const gap = missed(feed, after);
        if (gap) controller.enqueue(encoder.encode(`event: gap\ndata: ${JSON.stringify(gap)}\n\n`));
      },
      async pull(controller) {
        for (;;) {
          const events = feed.page(position, SSE_BATCH);
          if (events.length > 0) {
            position = events.at(-1)!.seq;
            controller.enqueue(ssePage(events));
            return;
          }
          const end = feed.end();
          if (end !== null || gone.signal.aborted) {
            if (end !== null) controller.enqueue(encoder.encode(`event: end\ndata: ${end}\n\n`));
            controller.close();
            return;
          }
          if (!(await waitOrTimeout(feed, gone.signal, keepaliveMs))) {
            controller.enqueue(encoder.encode(": keepalive\n\n"));
            return;
          }
        }
      },
      cancel() {
        gone.abort();
      },
    },
    { highWaterMark: 0 },
  );
}

/** True if the feed changed, false if `ms` passed first (the wait is withdrawn either way). */
async function waitOrTimeout(feed: Feed, gone: AbortSignal, ms: number): Promise<boolean> {
  const wait = new AbortController();
  const stop = () => wait.abort();
  gone.addEventListener("abort", stop);
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    wait.abort();
  }, ms);
  try {
    await feed.changed(wait.signal);
  } finally {
    clearTimeout(timer);
    gone.removeEventListener("abort", stop);
  }
  return !timedOut;
}

export const SSE_HEADERS = {
  "content-type": "text/event-stream; charset=utf-8",
  "cache-control": "no-cache, no-transform",
  // Tells nginx-style proxies not to buffer the stream.
  "x-accel-buffering": "no",
} as const;

export function wantsEventStream(accept: string | null): boolean {
  return accept?.includes("text/event-stream") ?? false;
}
