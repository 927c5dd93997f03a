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

/**
 * Nodes with an open control socket that said hello, every one of them: O(sockets), each
 * attachment deserialized. For status pages only; a hello, a join or a dispatch asks per node
 * (isLive, liveView), a tag lookup, so that admitting a node costs the same at 10 or 10,000 nodes.
 */
export function liveNodes(ctx: DurableObjectState): Set<string> {
  const live = new Set<string>();
  for (const ws of ctx.getWebSockets()) {
    const { nodeId, helloed } = ws.deserializeAttachment() as SocketAttachment;
    if (helloed && ws.readyState === WebSocket.OPEN) live.add(nodeId);
  }
  return live;
}

/**
 * The node's open sockets whose hello was accepted. A socket is tagged with the node id it asked
 * for when it opens, but until its hello is accepted it is nobody's: it gets no assignment and its
 * pings are no sign of the node's life, so a join token cannot spy on another node's units or keep
 * a dead node "alive".
 */
export function helloedSockets(ctx: DurableObjectState, nodeId: string): WebSocket[] {
  return ctx
    .getWebSockets(nodeId)
    .filter((ws) => ws.readyState === WebSocket.OPEN && (ws.deserializeAttachment() as SocketAttachment).helloed);
}

/** Whether the node has an open socket that said hello: a lookup of its tag, not a scan of every socket. */
export function isLive(ctx: DurableObjectState, nodeId: string): boolean {
  return helloedSockets(ctx, nodeId).length > 0;
}

/** What store queries take as "connected": a set, or isLive asked node by node. */
export interface LiveSet {
  has(nodeId: string): boolean;
}

export function liveView(ctx: DurableObjectState): LiveSet {
  return { has: (nodeId) => isLive(ctx, nodeId) };
}

/** The node's latest keepalive ping, answered by the runtime without waking the object. */
export function pingedAt(ctx: DurableObjectState, nodeId: string): number | null {
  let latest: number | null = null;
  for (const ws of helloedSockets(ctx, nodeId)) {
    const at = ctx.getWebSocketAutoResponseTimestamp(ws)?.getTime() ?? null;
    if (at !== null && (latest === null || at > latest)) latest = at;
  }
  return latest;
}
