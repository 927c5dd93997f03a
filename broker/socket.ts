/** Small helpers for hibernatable WebSockets shared by both Durable Objects. */
import type { ErrorBody } from "../shared/errors.js";
import { type BrokerControlMessage, type BrokerDataMessage, encode } from "../shared/protocol.js";
import { logError } from "./log.js";

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

/**
 * Whether a message that came on `ws` is to be handled: not once the broker has closed the socket
 * (a refusal, or a newer connection replaced it). The runtime still delivers what the peer had sent
 * behind the message that closed it; a results frame pipelined behind a refusal was stored.
 */
export function takesMessages(ws: WebSocket): boolean {
  return ws.readyState === WebSocket.OPEN;
}

/** Sends one message; a socket closing under us is logged, never thrown at the caller (its close handler runs anyway). */
export function sendMessage(ws: WebSocket, message: BrokerControlMessage | BrokerDataMessage): void {
  try {
    ws.send(encode(message));
  } catch (error) {
    logError("socket:send-failed", error);
  }
}

/** Tells the peer what was wrong with its message; the socket stays open. */
export function refuse(ws: WebSocket, error: ErrorBody): void {
  sendMessage(ws, { type: "error", error });
}

/** Tells the peer what was wrong and closes the socket: the peer must start again (or give up). */
export function refuseAndClose(ws: WebSocket, error: ErrorBody): void {
  refuse(ws, error);
  ws.close(4400, error.code);
}
