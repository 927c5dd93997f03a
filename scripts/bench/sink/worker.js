// Bench-only Worker, never deployed: a WebSocket sink on the same local workerd as the broker, so
// the bench can show what the runtime's WebSockets carry with no broker logic on the path.
// Binary frames are counted; the text frame "end" is answered with the byte count.
export default {
  async fetch(request) {
    if (request.headers.get("upgrade") !== "websocket") return new Response("ok");
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
