/** Small helpers for hibernatable WebSockets shared by both Durable Objects. */

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
