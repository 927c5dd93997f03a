/**
 * The transports the mesh's results stream is compared with: a raw WebSocket into a bench-only
 * Worker on local workerd (sink/), and raw loopback TCP. Both push the same bytes in the same
 * 256 KiB chunks as the agent does, and stop the clock when the receiver has counted them all.
 */
import { once } from "node:events";
import { createConnection, createServer } from "node:net";
import { WebSocket } from "undici";
import { CHUNK_BYTES } from "../../shared/frames.js";
import { now } from "./units.js";

/** As much unsent data as the agent allows itself in flight (its results window). */
const HIGH_WATER = 8 * 1024 * 1024;

export async function rawWebSocket(url: string, total: number): Promise<number> {
  const ws = new WebSocket(url);
  ws.binaryType = "arraybuffer";
  await new Promise<void>((resolve, reject) => {
    ws.addEventListener("open", () => resolve(), { once: true });
    ws.addEventListener(
      "close",
      (e) => reject(new Error(`raw WebSocket to ${url} closed before it opened (${e.code})`)),
      { once: true },
    );
  });
  const chunk = new Uint8Array(CHUNK_BYTES);
  const started = now();
  for (let sent = 0; sent < total; sent += CHUNK_BYTES) {
    while (ws.bufferedAmount > HIGH_WATER) await new Promise((r) => setTimeout(r, 1));
    ws.send(chunk.subarray(0, Math.min(CHUNK_BYTES, total - sent)));
  }
  const counted = new Promise<number>((resolve) =>
    ws.addEventListener("message", (e) => resolve(Number(e.data)), { once: true }),
  );
  ws.send("end");
  const received = await counted;
  const elapsed = now() - started;
  ws.close();
  if (received !== total) throw new Error(`raw WebSocket sink counted ${received} of ${total} bytes`);
  return elapsed;
}

export async function rawTcp(total: number): Promise<number> {
  let resolveDone!: () => void;
  const done = new Promise<void>((resolve) => (resolveDone = resolve));
  const server = createServer((socket) => {
    let bytes = 0;
    socket.on("data", (d) => {
      bytes += d.byteLength;
      if (bytes >= total) resolveDone();
    });
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const address = server.address();
  if (typeof address !== "object" || !address) throw new Error("no TCP address");
  const socket = createConnection(address.port, "127.0.0.1");
  await once(socket, "connect");
  const chunk = Buffer.alloc(CHUNK_BYTES);
  const started = now();
  for (let sent = 0; sent < total; sent += CHUNK_BYTES) {
    if (!socket.write(chunk.subarray(0, Math.min(CHUNK_BYTES, total - sent)))) await once(socket, "drain");
  }
  await done;
  const elapsed = now() - started;
  socket.destroy();
  server.close();
  return elapsed;
}
