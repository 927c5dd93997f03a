/** Small helpers for hibernatable WebSockets shared by both Durable Objects. */
import type { ErrorBody } from "../shared/errors.js";
import { encode } from "../shared/protocol.js";

/**
 * Completes the closing handshake the peer started. Without it, the peer waits for our close
 * frame until its own timeout. 1005/1006 are reserved (never sent on the wire), so answer 1000.
 */
export function completeClose(ws: WebSocket, code: number): void {
  try {
    ws.close(code === 1005 || code === 1006 || code === 1015 ? 1000 : code, "closed");
  } catch {
    // Already closed.
  }
}

/** Accepts a socket only to tell the peer why it is refused, in a frame it understands. */
export function refusedSocket(error: ErrorBody): Response {
  const pair = new WebSocketPair();
  pair[1].accept();
  pair[1].send(encode({ type: "error", error }));
  pair[1].close(4404, error.code);
  return new Response(null, { status: 101, webSocket: pair[0] });
}
