/**
 * Outbound WebSocket links to the broker, with keepalive: the agent pings on an interval,
 * the broker's runtime answers without waking its object, and a link that stays silent for two
 * intervals is closed so the caller reconnects instead of waiting on a dead peer.
 */
import type { Dispatcher, WebSocket } from "undici";
import { type ErrorBody, isErrorCode } from "../shared/errors.js";
import { PING, PONG } from "../shared/protocol.js";
import type { ControlFailure } from "./refusal.js";

/** Our close code for a peer that stopped answering (or never answered the handshake). */
const SILENT = 4008;

/** A handshake nobody answered: the broker (or the path to it) is silent, with no answer to probe. */
export class SilentPeer extends Error {
  override name = "SilentPeer";
}

/** The WebSocket URL of the mesh's `path` (`/connect`, `/units/<id>/data`) on `broker`. */
export function linkUrl(to: { broker: string; mesh: string }, path: string, query: Record<string, string>): string {
  const base = new URL(to.broker);
  base.protocol = base.protocol === "https:" ? "wss:" : "ws:";
  base.pathname = `${base.pathname.replace(/\/$/, "")}/v1/meshes/${encodeURIComponent(to.mesh)}${path}`;
  for (const [k, v] of Object.entries(query)) base.searchParams.set(k, v);
  return base.toString();
}

export interface Link {
  ws: WebSocket;
  /** Resolves with the close code once the link is closed, by either side. */
  closed: Promise<number>;
  send(data: string | Uint8Array): void;
  close(code?: number, reason?: string): void;
  /** The broker's welcome names the interval its lease is sized for. */
  setPingInterval(ms: number): void;
}

export interface LinkHandlers {
  onText(text: string): void;
  onBinary(data: Uint8Array): void;
}

type WebSocketClass = typeof WebSocket;

/**
 * Node's own WebSocket where it has one (Node ≥ 22; its bundled undici takes the same `{ headers }`
 * init), else the undici package's, loaded only then: an idle agent on Node 24 holds ~7 MiB less
 * without the package (docs/benchmarks.md, row 6). --ca-file's dispatcher is an
 * Agent of the package, which the built-in WebSocket is not guaranteed to accept: the package's
 * WebSocket takes it.
 */
export async function webSocketClass(
  dispatcher: Dispatcher | undefined,
  builtIn: unknown = globalThis.WebSocket,
): Promise<WebSocketClass> {
  if (dispatcher === undefined && typeof builtIn === "function") return builtIn as WebSocketClass;
  return (await import("undici")).WebSocket;
}

export async function openLink(
  url: string,
  token: string,
  handlers: LinkHandlers,
  pingIntervalMs: number,
  dispatcher?: Dispatcher,
): Promise<Link> {
  const WebSocket = await webSocketClass(dispatcher);
  return new Promise((resolve, reject) => {
    // The dispatcher carries --ca-file's CAs (an undici Agent with connect.ca); without it, Node's roots and NODE_EXTRA_CA_CERTS.
    const ws = new WebSocket(url, {
      headers: { authorization: `Bearer ${token}` },
      ...(dispatcher ? { dispatcher } : {}),
    });
    ws.binaryType = "arraybuffer";
    let lastHeard = Date.now();
    let opened = false;
    let ended = false;
    let keepalive: NodeJS.Timeout | undefined;
    let settle!: (code: number) => void;
    const closed = new Promise<number>((done) => (settle = done));
    const end = (code: number, reason = "") => {
      if (ended) return;
      ended = true;
      clearInterval(keepalive);
      if (!opened) {
        const message = `connection to ${redact(url)} failed (close code ${code}${reason ? `: ${reason}` : ""})`;
        reject(code === SILENT ? new SilentPeer(message) : new Error(message));
      }
      settle(code);
    };
    ws.addEventListener("close", (event) => end(event.code, event.reason));
    ws.addEventListener("error", () => {
      // Always followed by a close event, which settles both promises.
    });
    ws.addEventListener("message", (event) => {
      // A link given up on below may still deliver late frames; its successor owns the unit now.
      if (ended) return;
      lastHeard = Date.now();
      if (typeof event.data === "string") {
        if (event.data !== PONG) handlers.onText(event.data);
      } else {
        handlers.onBinary(new Uint8Array(event.data as ArrayBuffer));
      }
    });
    const startKeepalive = (interval: number) => {
      clearInterval(keepalive);
      keepalive = setInterval(() => {
        if (Date.now() - lastHeard > 2 * interval + 1000) {
          const reason = opened ? "keepalive timeout" : "no answer to the handshake";
          // A silent peer never answers the closing handshake and undici has no close timeout, so
          // the close event would wait for TCP to give up (many minutes): give the link up now.
          end(SILENT, reason);
          ws.close(SILENT, reason);
          return;
        }
        if (ws.readyState === WebSocket.OPEN) ws.send(PING);
      }, interval);
      keepalive.unref();
    };
    // From the start: undici would wait minutes for the answer to a handshake a silent peer ignores.
    startKeepalive(pingIntervalMs);
    ws.addEventListener("open", () => {
      if (ended) return void ws.close(1000);
      opened = true;
      lastHeard = Date.now();
      startKeepalive(pingIntervalMs);
      resolve({
        ws,
        closed,
        send(data) {
          if (ws.readyState === WebSocket.OPEN) ws.send(data);
        },
        close(code = 1000, reason = "") {
          if (ws.readyState === WebSocket.OPEN || ws.readyState === WebSocket.CONNECTING) ws.close(code, reason);
        },
        setPingInterval(ms) {
          if (ms !== pingIntervalMs && ws.readyState === WebSocket.OPEN) {
            pingIntervalMs = ms;
            startKeepalive(ms);
          }
        },
      });
    });
  });
}

function redact(url: string): string {
  return url.replace(/\?.*$/, "");
}

/**
 * Why a WebSocket handshake to `url` failed. The WebSocket API hides the HTTP answer (every failure
 * is close code 1006), so the same URL is asked again as a plain GET with the same token: the broker
 * authenticates before it looks for an upgrade, so a refused token answers 401 or 403 here too, and
 * an accepted one answers 400 ("this endpoint takes a WebSocket upgrade").
 */
export async function probeHandshake(url: string, token: string, timeoutMs = 5_000): Promise<ControlFailure> {
  const http = new URL(url);
  http.protocol = http.protocol === "wss:" ? "https:" : "http:";
  let response: Response;
  try {
    response = await fetch(http, {
      headers: { authorization: `Bearer ${token}` },
      signal: AbortSignal.timeout(timeoutMs),
    });
  } catch (error) {
    // fetch says only "fetch failed"; the cause says why (ECONNREFUSED, a DNS failure…).
    const cause = error instanceof Error && error.cause instanceof Error ? error.cause.message : null;
    return { kind: "unreachable", error: cause ?? (error instanceof Error ? error.message : String(error)) };
  }
  const body = (await response.json().catch(() => null)) as { error?: unknown } | null;
  const error = body?.error as Partial<ErrorBody> | undefined;
  const known =
    error && isErrorCode(error.code) && typeof error.message === "string"
      ? { code: error.code, message: error.message }
      : null;
  return { kind: "answered", status: response.status, error: known };
}
