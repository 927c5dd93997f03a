/**
 * The Worker in-process, for tests of the broker alone: routes, auth, validation and each object's
 * behaviour, through the public HTTP surface (the Worker's own fetch) and its WebSockets, with no
 * agent process. These tests run inside workerd (@cloudflare/vitest-plugin, vitest.config.ts's
 * `workers` projects): no Node sockets or child processes here. A node is spoken by hand
 * (rawNode), frame by frame with shared/protocol.ts and shared/frames.ts.
 */
import { exports } from "cloudflare:workers";
import { type BrokerControlMessage, type BrokerDataMessage, PROTOCOL_VERSION, encode } from "../../shared/protocol.js";
import { encodeFrame } from "../../shared/frames.js";
import { ADMIN } from "./admin.js";

export { ADMIN };

/** Any origin: the Worker is called directly, never over a network. */
export const ORIGIN = "http://broker.test";

export function newMesh(): string {
  return `t-${crypto.randomUUID().slice(0, 12)}`;
}

/** The Worker's answer to one request (its fetch handler, as `wrangler dev` or Cloudflare would call it). */
export function workerFetch(path: string, init?: RequestInit): Promise<Response> {
  return exports.default.fetch(new Request(`${ORIGIN}${path}`, init));
}

/** Status and body of an answer: JSON where it parses, raw text (results) otherwise. */
export async function readReply<T>(response: Response): Promise<{ status: number; body: T }> {
  // Decoded by hand: results are bytes, and workerd warns on .text() of a body not typed as text.
  const text = new TextDecoder().decode(await response.arrayBuffer());
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    // Raw bytes (results) stay text.
  }
  return { status: response.status, body: body as T };
}

export async function api<T = unknown>(
  mesh: string,
  method: "GET" | "POST" | "DELETE",
  path: string,
  options: {
    body?: string | Uint8Array | ReadableStream;
    token?: string | null;
    headers?: Record<string, string>;
  } = {},
): Promise<{ status: number; body: T }> {
  const auth: Record<string, string> =
    options.token === null ? {} : { authorization: `Bearer ${options.token ?? ADMIN}` };
  const body = method === "GET" ? null : (options.body ?? null);
  return readReply<T>(
    await workerFetch(`/v1/meshes/${mesh}${path}`, { method, headers: { ...auth, ...options.headers }, body }),
  );
}

/** Creates a token of `role` in `mesh` (with the admin token, or the token `as`). */
export async function createToken(
  mesh: string,
  role: string,
  opts: { name?: string; as?: string } = {},
): Promise<{ id: string; token: string }> {
  const created = await api<{ id: string; token: string }>(mesh, "POST", "/tokens", {
    body: JSON.stringify({ role, name: opts.name ?? `test ${role}` }),
    headers: { "content-type": "application/json" },
    ...(opts.as ? { token: opts.as } : {}),
  });
  if (created.status !== 201)
    throw new Error(`create ${role} token: HTTP ${created.status}: ${JSON.stringify(created.body)}`);
  return created.body;
}

export async function waitFor(check: () => Promise<boolean> | boolean, what: string, timeoutMs = 8_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Opens a WebSocket route of `mesh` as a client would (an Upgrade request) and accepts our end. */
export async function openSocket(mesh: string, path: string, token: string): Promise<WebSocket> {
  const response = await workerFetch(`/v1/meshes/${mesh}${path}`, {
    headers: { upgrade: "websocket", authorization: `Bearer ${token}` },
  });
  const ws = response.webSocket;
  if (!ws) throw new Error(`socket ${path} refused: HTTP ${response.status} ${await response.text()}`);
  ws.accept();
  return ws;
}

/** A socket whose text frames are read in order, each awaited with a deadline. */
export class RawSocket<T extends { type: string }> {
  private readonly queue: T[] = [];
  private readonly waiting: ((message: T) => void)[] = [];
  private closed: { code: number; reason: string } | null = null;
  private readonly onClose: Promise<{ code: number; reason: string }>;

  private constructor(readonly ws: WebSocket) {
    ws.addEventListener("message", (e) => {
      if (typeof e.data !== "string") return;
      const message = JSON.parse(e.data) as T;
      const waiter = this.waiting.shift();
      if (waiter) waiter(message);
      else this.queue.push(message);
    });
    this.onClose = new Promise((resolve) =>
      ws.addEventListener("close", (e) => {
        this.closed = { code: e.code, reason: e.reason };
        resolve(this.closed);
      }),
    );
  }

  static async open<T extends { type: string }>(endpoint: Endpoint, path: string): Promise<RawSocket<T>> {
    return new RawSocket<T>(await openSocket(endpoint.mesh, path, endpoint.token));
  }

  /** The next text frame the broker sent; fails the test after `timeoutMs` without one. */
  next(timeoutMs = 5_000): Promise<T> {
    const queued = this.queue.shift();
    if (queued) return Promise.resolve(queued);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.splice(this.waiting.indexOf(done), 1);
        reject(
          new Error(
            `no message within ${timeoutMs} ms${this.closed ? ` (closed ${this.closed.code} ${this.closed.reason})` : ""}`,
          ),
        );
      }, timeoutMs);
      const done = (message: T) => {
        clearTimeout(timer);
        resolve(message);
      };
      this.waiting.push(done);
    });
  }

  closedWith(): Promise<{ code: number; reason: string }> {
    return this.onClose;
  }

  close(): void {
    try {
      this.ws.close();
    } catch {
      // Closed already.
    }
  }
}

export const VERSIONS = { agent: "raw", node: "v24", ansibleRunner: null, podman: null, podmanUsable: false };

/** Where a hand-spoken node dials: its mesh and the token it presents (the Worker is called directly: no URL). */
export interface Endpoint {
  mesh: string;
  token: string;
}

/** Says hello as `nodeId` on a control socket and answers the socket and the first thing the broker says. */
export async function joinNode(
  endpoint: Endpoint,
  nodeId: string,
  worktypes: string[],
  capacity = 1,
  options: { inlineStart?: boolean; streamingPayload?: boolean } = {},
) {
  const socket = await RawSocket.open<BrokerControlMessage>(endpoint, `/connect?node=${nodeId}`);
  const workTypes = worktypes.map((worktype) => ({
    worktype,
    verifySignature: false,
    allowRuntimeParams: true,
    ...options,
  }));
  socket.ws.send(
    encode({
      type: "hello",
      protocol: PROTOCOL_VERSION,
      nodeId,
      workTypes,
      capacity,
      tags: {},
      versions: VERSIONS,
      units: [],
    }),
  );
  return { socket, first: await socket.next() };
}

/** Joins as `nodeId` on a control socket and waits for the welcome. */
export async function rawNode(
  endpoint: Endpoint,
  nodeId: string,
  worktypes: string[],
  capacity = 1,
): Promise<RawSocket<BrokerControlMessage>> {
  const { socket, first } = await joinNode(endpoint, nodeId, worktypes, capacity);
  if (first.type !== "welcome") throw new Error(`expected welcome, got ${JSON.stringify(first)}`);
  return socket;
}

export type DataSocket = RawSocket<BrokerDataMessage> & { results(offset: number, text: string): void };

/** Opens the unit's data socket as `nodeId` and attaches; returns the socket and the `attached` answer. */
export async function attachUnit(endpoint: Endpoint, unitId: string, nodeId: string) {
  const data = (await RawSocket.open<BrokerDataMessage>(
    endpoint,
    `/units/${unitId}/data?node=${nodeId}`,
  )) as DataSocket;
  data.results = (offset, text) => data.ws.send(encodeFrame("results", offset, new TextEncoder().encode(text)));
  data.ws.send(encode({ type: "attach", protocol: PROTOCOL_VERSION, nodeId }));
  const attached = await data.next();
  if (attached.type !== "attached") throw new Error(`expected attached, got ${JSON.stringify(attached)}`);
  return { data, attached };
}
