/**
 * An agent spoken by hand, frame by frame, for tests that need what a real agent never sends on its
 * own (a duplicate frame, a `finished` that claims more bytes than were stored) or a moment a real
 * agent passes through too fast to catch (attached, not yet started). It speaks the real protocol
 * (shared/protocol.ts, shared/frames.ts) to the real broker.
 */
import { WebSocket } from "undici";
import { type BrokerControlMessage, type BrokerDataMessage, PROTOCOL_VERSION, encode } from "../../shared/protocol.js";
import { encodeFrame } from "../../shared/frames.js";

export interface Endpoint {
  url: string;
  token: string;
  mesh: string;
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
    const ws = new WebSocket(`${endpoint.url.replace("http", "ws")}/v1/meshes/${endpoint.mesh}${path}`, {
      headers: { authorization: `Bearer ${endpoint.token}` },
    });
    const socket = new RawSocket<T>(ws);
    await new Promise<void>((resolve, reject) => {
      ws.addEventListener("open", () => resolve());
      ws.addEventListener("error", () => reject(new Error(`socket ${path} failed to open`)));
    });
    return socket;
  }

  /** The next text frame the broker sent; fails the test after `timeoutMs` without one. */
  next(timeoutMs = 10_000): Promise<T> {
    const queued = this.queue.shift();
    if (queued) return Promise.resolve(queued);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.splice(this.waiting.indexOf(done), 1);
        reject(new Error(`no message within ${timeoutMs} ms${this.closed ? ` (closed ${this.closed.code} ${this.closed.reason})` : ""}`));
      }, timeoutMs);
      const done = (message: T) => {
        clearTimeout(timer);
        resolve(message);
      };
      this.waiting.push(done);
    });
  }

  /** Whatever arrived and was not read yet (to check that nothing else was said). */
  unread(): T[] {
    return this.queue.splice(0);
  }

  closedWith(): Promise<{ code: number; reason: string }> {
    return this.onClose;
  }

  close(): void {
    this.ws.close();
  }
}

const VERSIONS = { agent: "raw", node: process.version, ansibleRunner: null, podman: null, podmanUsable: false };

/** Joins as `nodeId` on a control socket (admin token) and waits for the welcome. */
export async function rawNode(endpoint: Endpoint, nodeId: string, worktypes: string[], capacity = 1): Promise<RawSocket<BrokerControlMessage>> {
  const control = await RawSocket.open<BrokerControlMessage>(endpoint, `/connect?node=${nodeId}`);
  control.ws.send(
    encode({
      type: "hello",
      protocol: PROTOCOL_VERSION,
      nodeId,
      workTypes: worktypes.map((worktype) => ({ worktype, verifySignature: false, allowRuntimeParams: true })),
      capacity,
      tags: {},
      versions: VERSIONS,
      units: [],
    }),
  );
  const welcome = await control.next();
  if (welcome.type !== "welcome") throw new Error(`expected welcome, got ${JSON.stringify(welcome)}`);
  return control;
}

export type DataSocket = RawSocket<BrokerDataMessage> & { results(offset: number, text: string): void };

/** Opens the unit's data socket as `nodeId` and attaches; returns the socket and the `attached` answer. */
export async function attachUnit(endpoint: Endpoint, unitId: string, nodeId: string) {
  const data = (await RawSocket.open<BrokerDataMessage>(endpoint, `/units/${unitId}/data?node=${nodeId}`)) as DataSocket;
  data.results = (offset, text) => data.ws.send(encodeFrame("results", offset, new TextEncoder().encode(text)));
  data.ws.send(encode({ type: "attach", protocol: PROTOCOL_VERSION, nodeId }));
  const attached = await data.next();
  if (attached.type !== "attached") throw new Error(`expected attached, got ${JSON.stringify(attached)}`);
  return { data, attached };
}
