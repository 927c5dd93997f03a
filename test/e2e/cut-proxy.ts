/**
 * A TCP proxy on loopback for fault tests: forwards to a target port and can cut every connection
 * at once, go down (new connections are destroyed on accept) and come back up, or go silent: live
 * connections frozen, new ones blackholed. Cuts send RST, so no end mistakes one for a clean close.
 */
import { type Server, type Socket, connect, createServer } from "node:net";

export interface CutProxy {
  port: number;
  url: string;
  /** Bytes forwarded so far over all connections: `up` from clients to the target, `down` back. */
  readonly bytes: Readonly<Bytes>;
  /**
   * Called after each chunk forwarded, with the new totals: lets a test cut at chosen points of a
   * stream, precisely, where polling the target would be far too coarse.
   */
  onBytes(listener: ((bytes: Readonly<Bytes>) => void) | null): void;
  /** Resets every connection, frozen and held ones too; returns how many forwarding pairs were cut. */
  cutAll(): number;
  /**
   * Stops forwarding on every live connection but keeps it open: a peer gone silent, with no RST
   * or FIN, as when a NAT drops its mapping. New connections are forwarded as usual.
   */
  freeze(): void;
  /**
   * While on, new connections are accepted and then ignored: held open and never forwarded, even
   * after it is turned off (a handshake to a silent peer). `held` counts them.
   */
  blackhole(on: boolean): void;
  readonly held: number;
  /** Refuse new connections and cut the live ones. */
  down(): void;
  up(): void;
  close(): Promise<void>;
}

interface Bytes {
  up: number;
  down: number;
}

export async function startCutProxy(targetPort: number, targetHost = "127.0.0.1"): Promise<CutProxy> {
  const pairs = new Set<[Socket, Socket]>();
  const frozen = new Set<[Socket, Socket]>();
  const holding = new Set<Socket>();
  let isDown = false;
  let isBlackhole = false;
  let held = 0;
  const bytes: Bytes = { up: 0, down: 0 };
  let listener: ((bytes: Readonly<Bytes>) => void) | null = null;
  const server: Server = createServer((client) => {
    if (isDown) {
      client.destroy();
      return;
    }
    if (isBlackhole) {
      held++;
      holding.add(client);
      client.on("error", () => client.destroy()).on("close", () => holding.delete(client));
      client.pause();
      return;
    }
    const upstream = connect(targetPort, targetHost);
    const pair: [Socket, Socket] = [client, upstream];
    pairs.add(pair);
    const drop = () => {
      pairs.delete(pair);
      frozen.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on("error", drop).on("close", drop);
    upstream.on("error", drop).on("close", drop);
    client.pipe(upstream);
    upstream.pipe(client);
    client.on("data", (chunk: Buffer) => {
      bytes.up += chunk.byteLength;
      listener?.(bytes);
    });
    upstream.on("data", (chunk: Buffer) => {
      bytes.down += chunk.byteLength;
      listener?.(bytes);
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const address = server.address();
  if (typeof address !== "object" || !address) throw new Error("cut proxy has no port");
  const cutAll = () => {
    const cut = pairs.size;
    for (const [client, upstream] of [...pairs, ...frozen]) {
      client.resetAndDestroy();
      upstream.resetAndDestroy();
    }
    for (const client of holding) client.resetAndDestroy();
    pairs.clear();
    frozen.clear();
    holding.clear();
    return cut;
  };
  return {
    port: address.port,
    url: `http://127.0.0.1:${address.port}`,
    bytes,
    onBytes(next) {
      listener = next;
    },
    cutAll,
    freeze() {
      for (const pair of pairs) {
        const [client, upstream] = pair;
        client.unpipe(upstream);
        upstream.unpipe(client);
        client.pause();
        upstream.pause();
        frozen.add(pair);
      }
      pairs.clear();
    },
    blackhole(on) {
      isBlackhole = on;
    },
    get held() {
      return held;
    },
    down() {
      isDown = true;
      cutAll();
    },
    up() {
      isDown = false;
    },
    close() {
      isDown = true;
      cutAll();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}
