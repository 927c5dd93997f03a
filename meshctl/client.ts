/**
 * The broker's HTTP API as functions. Errors come back as MeshApiError carrying the broker's
 * stable code; the results follower resumes from the last byte it got if the connection drops.
 *
 * Node's own fetch (undici inside Node) rather than the undici package: it is part of Node and
 * loads in a few milliseconds where the package takes ~150 ms, which every meshctl command paid.
 */
import { PAYLOAD_FRAMING, PAYLOAD_FRAMING_HEADER } from "../shared/payload-framing.js";
import type { HealthReport } from "../shared/health.js";
import type { Readable, Writable } from "node:stream";
import type { TokenInfo } from "../shared/api.js";
import { CliError } from "../shared/node/cli.js";
import { sleep } from "../shared/backoff.js";
import { Outage, type RidePolicy } from "./ride.js";
import { isTerminal } from "../shared/states.js";
import type { MeshStatus, UnitRecord, UnitSummary } from "../shared/unit.js";

/** The broker's answer to a failed request: its error code (or `unreachable`) and HTTP status (0 for none). */
export class MeshApiError extends CliError {
  override name = "MeshApiError";
  constructor(
    code: string,
    message: string,
    readonly status: number,
  ) {
    super(code, message);
  }

  override describe(): string {
    return `${this.code}: ${this.message}`;
  }
}

export interface SubmitOptions {
  worktype: string;
  node?: string | undefined;
  params?: Record<string, string>;
  idempotencyKey?: string | undefined;
  /** receptorctl's --ttl: a duration such as 1h20m30s. */
  ttl?: string | undefined;
  /** Fail it "node lost" only after its node is silent this long (a duration); default: the broker's. */
  lostAfter?: string | undefined;
  /** A unit id of the submitter's choosing (8 of [0-9a-zA-Z]); a signature needs it. */
  unitId?: string | undefined;
  /** The `Mesh-Signature` over the unit (shared/signing.ts). */
  signature?: string | undefined;
  /** Tags its node must have (`k=v` or `k`), all of them. */
  tags?: string[] | undefined;
  /** Higher first (-1000 to 1000; the broker's default is 0). */
  priority?: string | undefined;
  /** Where the unit comes from, for `records(origin)` (the control service gives its node id). */
  origin?: string | undefined;
  payload: Readable | Buffer | string;
  /**
   * The payload's length, sent as Content-Length when the payload is a stream, so an upload cut
   * short fails the unit `payload_incomplete`: a chunked body cut short can reach the broker as
   * a complete one (wrangler dev does this) and the unit would run on a truncated stdin.
   */
  payloadSize?: number | undefined;
  /** The payload is framed (shared/payload-framing.ts) and its length unknown: no Content-Length. */
  payloadFramed?: boolean | undefined;
}

/** How long a followed results stream may stay silent before it is reopened from its offset. */
const FOLLOW_IDLE_MS = 60_000;

/** Without a policy from the caller: ride out a broker restart (~30 s), silently. */
const QUIET_RIDE: RidePolicy = { retryForMs: 30_000, notice: () => undefined };

export class MeshClient {
  constructor(
    private readonly broker: string,
    private readonly token: string,
    private readonly mesh: string,
    /** How followers ride out an unreachable broker (ride.ts). */
    readonly ride: RidePolicy = QUIET_RIDE,
    /** Node's fetch, or one that trusts --ca-file's CAs (meshctl/cli.ts). */
    private readonly fetcher: typeof fetch = fetch,
  ) {}

  private url(
    path: string,
    query: Record<string, string | undefined> = {},
    repeated: Record<string, readonly string[]> = {},
  ): string {
    const url = new URL(this.broker);
    url.pathname = `${url.pathname.replace(/\/$/, "")}/v1/meshes/${encodeURIComponent(this.mesh)}${path}`;
    for (const [k, v] of Object.entries(query)) if (v !== undefined) url.searchParams.set(k, v);
    for (const [k, values] of Object.entries(repeated)) for (const v of values) url.searchParams.append(k, v);
    return url.toString();
  }

  private async call(
    method: "GET" | "POST" | "DELETE",
    path: string,
    options: {
      query?: Record<string, string | undefined>;
      /** Query parameters given once per value (`tag=a&tag=b`). */
      repeated?: Record<string, readonly string[]>;
      body?: SubmitOptions["payload"];
      headers?: Record<string, string>;
      signal?: AbortSignal | undefined;
    } = {},
  ): Promise<Response> {
    let response;
    try {
      response = await this.fetcher(this.url(path, options.query, options.repeated), {
        method,
        headers: { authorization: `Bearer ${this.token}`, ...options.headers },
        body: options.body ?? null,
        // A stream body; the Content-Length the caller gives is still sent and enforced.
        duplex: "half",
        // As the API's clients expect: an answer is the broker's, never a page it redirects to.
        redirect: "manual",
        ...(options.signal ? { signal: options.signal } : {}),
      });
    } catch (error) {
      if (options.signal?.aborted) throw error;
      // fetch says only "fetch failed"; the cause says why (ECONNREFUSED, a DNS failure…).
      const cause = error instanceof Error && error.cause instanceof Error ? error.cause : error;
      throw new MeshApiError(
        "unreachable",
        `cannot reach the broker at ${this.broker}: ${cause instanceof Error ? cause.message : String(cause)}`,
        0,
      );
    }
    if (response.status >= 400) {
      const text = await response.text();
      let code = "http_error";
      let message = `HTTP ${response.status}`;
      try {
        const body = JSON.parse(text) as { error?: { code?: string; message?: string } };
        code = body.error?.code ?? code;
        message = body.error?.message ?? message;
      } catch {
        if (text) message = `${message}: ${text.slice(0, 200)}`;
      }
      throw new MeshApiError(code, message, response.status);
    }
    return response;
  }

  private async json<T>(
    method: "GET" | "POST" | "DELETE",
    path: string,
    query?: Record<string, string | undefined>,
  ): Promise<T> {
    const response = await this.call(method, path, query ? { query } : {});
    return (await response.json()) as T;
  }

  status = () => this.json<MeshStatus>("GET", "/status");
  list = () => this.json<UnitSummary[]>("GET", "/units");
  /** Whole status records of the units submitted with `origin`, tombstones left out, in one request. */
  records = (origin: string) => this.json<UnitRecord[]>("GET", "/units", { origin, records: "1" });
  unit = (id: string) => this.json<UnitRecord>("GET", `/units/${encodeURIComponent(id)}`);
  cancel = (id: string) => this.json<UnitRecord>("POST", `/units/${encodeURIComponent(id)}/cancel`);
  release = (id: string) => this.json<UnitRecord>("DELETE", `/units/${encodeURIComponent(id)}`);
  tokens = () => this.json<TokenInfo[]>("GET", "/tokens");
  revokeToken = (id: string) => this.json<TokenInfo>("DELETE", `/tokens/${encodeURIComponent(id)}`);
  removeNode = (id: string) =>
    this.json<{ node: string; revoked: boolean; removed: boolean }>("DELETE", `/nodes/${encodeURIComponent(id)}`);
  pauseNode = (id: string) =>
    this.json<{ node: string; paused: boolean }>("POST", `/nodes/${encodeURIComponent(id)}/pause`);
  resumeNode = (id: string) =>
    this.json<{ node: string; paused: boolean }>("POST", `/nodes/${encodeURIComponent(id)}/resume`);
  checkNode = (id: string) => this.json<HealthReport>("POST", `/nodes/${encodeURIComponent(id)}/check`);
  metrics = async () => (await this.call("GET", "/metrics")).text();

  /** A GET whose body the caller reads as it arrives (events, artifacts); errors as for every call. */
  get = (
    path: string,
    options: {
      query?: Record<string, string | undefined>;
      headers?: Record<string, string>;
      signal?: AbortSignal;
    } = {},
  ) => this.call("GET", path, options);

  async createToken(role: string, name?: string): Promise<TokenInfo & { token: string }> {
    const response = await this.call("POST", "/tokens", {
      body: JSON.stringify({ role, ...(name ? { name } : {}) }),
      headers: { "content-type": "application/json" },
    });
    return (await response.json()) as TokenInfo & { token: string };
  }

  async submit(options: SubmitOptions): Promise<UnitRecord> {
    const query: Record<string, string | undefined> = {
      worktype: options.worktype,
      node: options.node,
      ttl: options.ttl,
      lostAfter: options.lostAfter,
      priority: options.priority,
      id: options.unitId,
      origin: options.origin,
    };
    for (const [k, v] of Object.entries(options.params ?? {})) query[`param.${k}`] = v;
    const response = await this.call("POST", "/units", {
      query,
      repeated: { tag: options.tags ?? [] },
      body: options.payload,
      headers: {
        "content-type": "application/octet-stream",
        ...(options.idempotencyKey ? { "idempotency-key": options.idempotencyKey } : {}),
        ...(options.signature ? { "mesh-signature": options.signature } : {}),
        ...(options.payloadSize !== undefined ? { "content-length": String(options.payloadSize) } : {}),
        ...(options.payloadFramed ? { [PAYLOAD_FRAMING_HEADER]: PAYLOAD_FRAMING } : {}),
      },
    });
    return (await response.json()) as UnitRecord;
  }

  /**
   * Copies results from `offset` to `out`, byte for byte, respecting its backpressure, resuming
   * from the last byte written whenever the connection drops. With `follow`, keeps going until
   * the unit is final. Returns the offset reached. Aborting `signal` (the reader went away) ends
   * it with the signal's reason, also while it waits for `out` to drain.
   */
  async results(
    id: string,
    out: Writable,
    options: { offset?: number; follow?: boolean; signal?: AbortSignal } = {},
  ): Promise<number> {
    const { signal } = options;
    let offset = options.offset ?? 0;
    const outage = new Outage(this.ride);
    for (;;) {
      const before = offset;
      // A followed stream carries no heartbeat (the bytes are the results, raw), so a link that
      // went silent is only noticed by this timeout; a quiet unit just costs a reconnect.
      const idle = options.follow ? new IdleTimeout(FOLLOW_IDLE_MS) : null;
      try {
        const response = await this.call("GET", `/units/${encodeURIComponent(id)}/results`, {
          query: { offset: String(offset), follow: options.follow ? "1" : undefined },
          signal: idle && signal ? AbortSignal.any([idle.signal, signal]) : (idle?.signal ?? signal),
        });
        // The broker answered: what follows is riding out drops, not failing to connect.
        outage.reached();
        if (response.body) {
          for await (const chunk of response.body) {
            idle?.reset();
            offset += chunk.byteLength;
            if (!out.write(chunk)) {
              // A slow reader is not a silent broker.
              idle?.clear();
              await drained(out, signal);
              idle?.reset();
            }
          }
        }
        if (!options.follow) return offset;
        // Inside the try: the broker may be restarting, which is one more drop to ride out.
        const record = await this.unit(id);
        if (isTerminal(record.state) && offset >= record.stdoutSize) return offset;
      } catch (error) {
        if (signal?.aborted) throw signal.reason;
        if (offset > before) outage.reached();
        await outage.failed(error);
        continue;
      } finally {
        idle?.clear();
      }
      // The stream ended before the unit did (the broker restarting, say): reopen it where it stopped.
      await sleep(200);
    }
  }

  /** `fn` again until the broker answers it, riding out an outage as the followers do. */
  async riding<T>(fn: () => Promise<T>): Promise<T> {
    const outage = new Outage(this.ride);
    for (;;) {
      try {
        return await fn();
      } catch (error) {
        await outage.failed(error);
      }
    }
  }
}

/** Aborts its signal once `ms` pass without a reset(). */
class IdleTimeout {
  private readonly controller = new AbortController();
  private timer: NodeJS.Timeout;
  readonly signal = this.controller.signal;

  constructor(private readonly ms: number) {
    this.timer = this.start();
  }

  private start(): NodeJS.Timeout {
    return setTimeout(() => this.controller.abort(new Error(`no results for ${this.ms / 1000} s`)), this.ms);
  }

  reset(): void {
    clearTimeout(this.timer);
    this.timer = this.start();
  }

  clear(): void {
    clearTimeout(this.timer);
  }
}

/** Resolves when `out` drains or `signal` aborts (a closed reader never drains). */
function drained(out: Writable, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const done = () => {
      out.off("drain", done);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    out.once("drain", done);
    signal?.addEventListener("abort", done, { once: true });
  });
}
