/**
 * Node leases, as pure functions of when each node was last heard from. Detection is fast, the
 * verdict patient:
 *  - silent past its lease, a node is *unreachable*: shown at once, its socket (if any, half-open)
 *    closed, its units left running;
 *  - silent past `lostAfterMs` (NODE_LOST_AFTER_MS, or a unit's own `lostAfter`), its units fail
 *    "node lost". A node that reconnects before that keeps them.
 * Silence is only counted while the broker runs: it is measured from the later of the node's last
 * sign of life and the moment this instance of the Mesh object started (`brokerSince`), so a
 * broker restart, a deploy or an eviction gives every node a full lease again. A node cannot have
 * been heard while nobody was listening.
 */
export interface LeaseTimes {
  leaseMs: number;
  /** Silence after which a node's units fail; never shorter than the lease. */
  lostAfterMs: number;
}

export type LeaseVerdict = "alive" | "unreachable" | "lost";

/** How long the node has been silent, counting only time this broker instance was there to hear. */
export function silence(lastSeen: number | null, brokerSince: number, now: number): number {
  return Math.max(0, now - Math.max(lastSeen ?? 0, brokerSince));
}

export function leaseVerdict(silentMs: number, times: LeaseTimes): LeaseVerdict {
  if (silentMs <= times.leaseMs) return "alive";
  return silentMs <= Math.max(times.leaseMs, times.lostAfterMs) ? "unreachable" : "lost";
}

/** The instant the node became unreachable (its silence passed the lease), for "unreachable since …". */
export function unreachableSince(
  lastSeen: number | null,
  brokerSince: number,
  times: Pick<LeaseTimes, "leaseMs">,
): number {
  return Math.max(lastSeen ?? 0, brokerSince) + times.leaseMs;
}

/**
 * When to look again: just past the earliest boundary (lease, or any of the lost-after times in
 * use) a watched node crosses next, but no later than a lease/3 heartbeat, because the Mesh object
 * also persists what live sockets tell it at each check.
 */
export function nextLeaseCheck(
  silences: readonly number[],
  now: number,
  leaseMs: number,
  lostAfters: readonly number[],
): number | null {
  if (silences.length === 0) return null;
  let next = now + Math.max(1000, Math.floor(leaseMs / 3));
  for (const silent of silences) {
    for (const boundary of [leaseMs, ...lostAfters]) {
      const at = now - silent + boundary + 1;
      if (at > now && at < next) next = at;
    }
  }
  return next;
}

export interface WatchedNode {
  silentMs: number;
  /** Already marked unreachable in this outage (persisted, so a restart does not announce it twice). */
  markedUnreachable: boolean;
  /** The mesh-wide lost verdict was already announced in this outage. */
  reportedLost: boolean;
  /** Its active units and their own lost-after (null: the broker's). */
  units: readonly { id: string; lostAfterMs: number | null }[];
}

export interface LeasePlan {
  /** Newly unreachable: mark it, close its socket, tell its units (one `unreachable` event). */
  markUnreachable: boolean;
  /** Newly past the broker's lost-after: one `lost` event for this outage. */
  reportLost: boolean;
  /** Units whose own lost-after has passed: they fail "node lost". */
  fail: string[];
}

/** What one lease check does to one node; each announcement happens once per outage. */
export function planLease(node: WatchedNode, times: LeaseTimes): LeasePlan {
  const verdict = leaseVerdict(node.silentMs, times);
  if (verdict === "alive") return { markUnreachable: false, reportLost: false, fail: [] };
  const fail = node.units
    .filter(
      (unit) =>
        leaseVerdict(node.silentMs, { ...times, lostAfterMs: unit.lostAfterMs ?? times.lostAfterMs }) === "lost",
    )
    .map((unit) => unit.id);
  return { markUnreachable: !node.markedUnreachable, reportLost: verdict === "lost" && !node.reportedLost, fail };
}
