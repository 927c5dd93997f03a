/**
 * What the Mesh object reads off its agents' control sockets. Connection state is never stored:
 * it is whether a live socket exists, because a broker restart drops every socket without running
 * any close handler.
 */
export interface SocketAttachment {
  nodeId: string;
  helloed: boolean;
  /** Opened with a join token: the hello issues the node's credential. */
  joining: boolean;
}

/** Nodes with an open control socket that said hello. */
export function liveNodes(ctx: DurableObjectState): Set<string> {
  const live = new Set<string>();
  for (const ws of ctx.getWebSockets()) {
    const { nodeId, helloed } = ws.deserializeAttachment() as SocketAttachment;
    if (helloed && ws.readyState === WebSocket.OPEN) live.add(nodeId);
  }
  return live;
}

/** The node's latest keepalive ping, answered by the runtime without waking the object. */
export function pingedAt(ctx: DurableObjectState, nodeId: string): number | null {
  let latest: number | null = null;
  for (const ws of ctx.getWebSockets(nodeId)) {
    if (ws.readyState !== WebSocket.OPEN) continue;
    const at = ctx.getWebSocketAutoResponseTimestamp(ws)?.getTime() ?? null;
    if (at !== null && (latest === null || at > latest)) latest = at;
  }
  return latest;
}
