// Bench-only Worker, never deployed: WebSocket sinks on the same local workerd as the broker, so the
// bench can show what the runtime carries with no broker logic on the path.
//  - /        a Worker that counts the binary frames (the raw WebSocket);
//  - /store   a Durable Object that stores each frame as the broker's results write does (one
//             SQLite row a frame, the frames of a turn in one transaction, then a sync) and
//             nothing else: no framing, pacing, events or follower. The storage ceiling.
// The text frame "end" is answered with the byte count (for /store once every frame is durable).
import { DurableObject } from "cloudflare:workers";

export class Store extends DurableObject {
  constructor(ctx, env) {
    super(ctx, env);
    ctx.storage.sql.exec("CREATE TABLE IF NOT EXISTS chunks (off INTEGER PRIMARY KEY, data BLOB)");
    this.bytes = 0;
    this.pending = [];
    this.writing = null;
  }

  async fetch() {
    const [client, server] = Object.values(new WebSocketPair());
    this.ctx.acceptWebSocket(server);
    this.ctx.storage.sql.exec("DELETE FROM chunks");
    this.bytes = 0;
    return new Response(null, { status: 101, webSocket: client });
  }

  /** Group commit as broker/unit/agent-link.ts writePending: frames arriving during a sync go in the next write. */
  write() {
    this.writing ??= (async () => {
      while (this.pending.length > 0) {
        const frames = this.pending;
        this.pending = [];
        for (const [off, data] of frames) this.ctx.storage.sql.exec("INSERT INTO chunks (off, data) VALUES (?, ?)", off, data);
        await this.ctx.storage.sync();
      }
      this.writing = null;
    })();
    return this.writing;
  }

  async webSocketMessage(ws, data) {
    if (typeof data === "string") {
      await this.write();
      ws.send(String(this.bytes));
      return;
    }
    this.pending.push([this.bytes, data]);
    this.bytes += data.byteLength;
    void this.write();
  }
}

export default {
  async fetch(request, env) {
    if (request.headers.get("upgrade") !== "websocket") return new Response("ok");
    if (new URL(request.url).pathname === "/store") return env.STORE.get(env.STORE.idFromName("sink")).fetch(request);
    const [client, server] = Object.values(new WebSocketPair());
    // With this compatibility date binary messages would arrive as Blobs (the standard default).
    server.binaryType = "arraybuffer";
    server.accept();
    let bytes = 0;
    server.addEventListener("message", (event) => {
      if (typeof event.data === "string") server.send(String(bytes));
      else bytes += event.data.byteLength;
    });
    return new Response(null, { status: 101, webSocket: client });
  },
};
