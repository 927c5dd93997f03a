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
  /** Events with seq > after, in order, at most `limit`. */
  page(after: number, limit: number): FeedEvent[];
  /** JSON of the closing record once no event will follow (the unit ended); null while open. */
  end(): string | null;
  /** Resolves at the next append or state change, or when `signal` aborts. */
  changed(signal: AbortSignal): Promise<void>;
}

export const PAGE_LIMIT = 1000;

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

/** The answer to a feed request: SSE when the client accepts it, else one JSON page. */
export function feedResponse(feed: Feed, request: Request, after: number, keepaliveMs: number, extra: Record<string, unknown>): Response {
  if (wantsEventStream(request.headers.get("accept"))) return new Response(sseStream(feed, after, keepaliveMs), { headers: SSE_HEADERS });
  const limit = Number(new URL(request.url).searchParams.get("limit") ?? 100);
  return new Response(jsonPage(feed, after, limit, extra), { headers: { "content-type": "application/json" } });
}

export function badResumePoint(): Response {
  return Response.json({ error: { code: "bad_request", message: "after / Last-Event-ID must be a non-negative integer" } }, { status: 400 });
}

/**
 * Recently rendered pages, shared by an object's followers: live followers are woken together and
 * ask for the same page, so it is rendered once rather than once per follower. Events never
 * change once written, so a cached page stays right (a short one just ends sooner).
 */
export class PageCache {
  private readonly pages = new Map<string, FeedEvent[]>();

  constructor(private readonly size = 64) {}

  get(key: string, render: () => FeedEvent[]): FeedEvent[] {
    const hit = this.pages.get(key);
    if (hit) return hit;
    const page = render();
    if (page.length === 0) return page;
    if (this.pages.size >= this.size) this.pages.delete(this.pages.keys().next().value!);
    this.pages.set(key, page);
    return page;
  }

  clear(): void {
    this.pages.clear();
  }
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

/** The start of an event log: an `after` query parameter wins over the Last-Event-ID header. */
export function resumePoint(query: string | null, lastEventId: string | null): number | null {
  const raw = query ?? lastEventId ?? "0";
  return /^\d{1,15}$/.test(raw.trim()) ? Number(raw.trim()) : null;
}

/** `{"seq":…,"kind":…,"time":…, …fields}` from a stored `fields` object written as JSON. */
export function renderEvent(seq: number, kind: string, at: number, fields: string, tail = ""): string {
  const inner = fields.length > 2 ? `,${fields.slice(1, -1)}` : "";
  return `{"seq":${seq},"kind":${JSON.stringify(kind)},"time":"${new Date(at).toISOString()}"${inner}${tail}}`;
}

/** A JSON page for pollers: `done` says nothing will follow `last`. */
export function jsonPage(feed: Feed, after: number, limit: number, extra: Record<string, unknown>): string {
  const size = Math.min(Math.max(Number.isSafeInteger(limit) ? limit : 100, 1), PAGE_LIMIT);
  const events = feed.page(after, size);
  const last = events.at(-1)?.seq ?? after;
  const done = events.length < size && feed.end() !== null;
  const fields = Object.entries({ last, done, ...extra })
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
