/**
 * Node leases, as pure functions of when each node was last heard from. A node silent past its
 * lease is lost (its socket, if any, is half-open and gets closed); one silent past lease + grace
 * has its units failed "node lost". A node that reconnects in between keeps its units.
 */
export interface LeaseTimes {
  leaseMs: number;
  graceMs: number;
}

export type LeaseVerdict = "alive" | "lost" | "expired";

export function leaseVerdict(lastSeen: number, now: number, times: LeaseTimes): LeaseVerdict {
  const silent = now - lastSeen;
  if (silent <= times.leaseMs) return "alive";
  return silent <= times.leaseMs + times.graceMs ? "lost" : "expired";
}

/**
 * When to look again: the earliest moment any watched node crosses its next boundary, but no
 * later than a lease/3 heartbeat, because the Mesh object also persists what live sockets tell it
 * at each check, so that a broker restart loses at most that much of a node's history.
 */
export function nextLeaseCheck(lastSeens: readonly number[], now: number, times: LeaseTimes): number | null {
  if (lastSeens.length === 0) return null;
  let next = now + Math.max(1000, Math.floor(times.leaseMs / 3));
  for (const seen of lastSeens) {
    for (const boundary of [seen + times.leaseMs, seen + times.leaseMs + times.graceMs]) {
      if (boundary >= now && boundary + 1 < next) next = boundary + 1;
    }
  }
  return next;
}
