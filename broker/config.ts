/** The broker's tunables, read from the Worker's vars (wrangler.toml) in one place. */
export interface BrokerConfig {
  maxPayloadBytes: number;
  pingIntervalMs: number;
  nodeLeaseMs: number;
  /** Silence after which a node's units fail "node lost" (a unit may carry its own). */
  nodeLostAfterMs: number;
  unitRetentionMs: number;
  tombstoneRetentionMs: number;
  maxPendingUnits: number;
  submitsPerMinute: number;
  /** Silence after which an SSE stream gets a keepalive comment. */
  sseKeepaliveMs: number;
  /** A control socket that has not said hello by then is closed. */
  helloTimeoutMs: number;
  /** Node ids one mesh may hold. */
  maxNodes: number;
  /** Pending units per submitting token (or node). */
  maxPendingPerSubmitter: number;
  /** Mesh-wide events kept for dashboards that resume (the oldest are dropped beyond it). */
  meshEventRetention: number;
}

const DEFAULTS: BrokerConfig = {
  maxPayloadBytes: 100 * 1024 * 1024,
  pingIntervalMs: 5_000,
  nodeLeaseMs: 15_000,
  nodeLostAfterMs: 600_000,
  unitRetentionMs: 7 * 86_400_000,
  tombstoneRetentionMs: 86_400_000,
  maxPendingUnits: 10_000,
  submitsPerMinute: 600,
  sseKeepaliveMs: 15_000,
  meshEventRetention: 10_000,
  helloTimeoutMs: 10_000,
  maxNodes: 1000,
  maxPendingPerSubmitter: 1000,
};

type Vars = Partial<
  Record<
    | "MAX_PAYLOAD_BYTES"
    | "PING_INTERVAL_MS"
    | "NODE_LEASE_MS"
    | "NODE_LOST_AFTER_MS"
    | "UNIT_RETENTION_MS"
    | "TOMBSTONE_RETENTION_MS"
    | "MAX_PENDING_UNITS"
    | "SUBMITS_PER_MINUTE"
    | "SSE_KEEPALIVE_MS"
    | "MESH_EVENT_RETENTION"
    | "HELLO_TIMEOUT_MS"
    | "MAX_NODES"
    | "MAX_PENDING_PER_SUBMITTER",
    string
  >
>;

/** A missing or malformed var falls back to its default rather than taking the broker down. */
export function brokerConfig(vars: Vars): BrokerConfig {
  const num = (value: string | undefined, fallback: number) => {
    const n = Number(value);
    return value !== undefined && Number.isSafeInteger(n) && n > 0 ? n : fallback;
  };
  return {
    maxPayloadBytes: num(vars.MAX_PAYLOAD_BYTES, DEFAULTS.maxPayloadBytes),
    pingIntervalMs: num(vars.PING_INTERVAL_MS, DEFAULTS.pingIntervalMs),
    nodeLeaseMs: num(vars.NODE_LEASE_MS, DEFAULTS.nodeLeaseMs),
    nodeLostAfterMs: num(vars.NODE_LOST_AFTER_MS, DEFAULTS.nodeLostAfterMs),
    unitRetentionMs: num(vars.UNIT_RETENTION_MS, DEFAULTS.unitRetentionMs),
    tombstoneRetentionMs: num(vars.TOMBSTONE_RETENTION_MS, DEFAULTS.tombstoneRetentionMs),
    maxPendingUnits: num(vars.MAX_PENDING_UNITS, DEFAULTS.maxPendingUnits),
    submitsPerMinute: num(vars.SUBMITS_PER_MINUTE, DEFAULTS.submitsPerMinute),
    sseKeepaliveMs: num(vars.SSE_KEEPALIVE_MS, DEFAULTS.sseKeepaliveMs),
    meshEventRetention: num(vars.MESH_EVENT_RETENTION, DEFAULTS.meshEventRetention),
    helloTimeoutMs: num(vars.HELLO_TIMEOUT_MS, DEFAULTS.helloTimeoutMs),
    maxNodes: num(vars.MAX_NODES, DEFAULTS.maxNodes),
    maxPendingPerSubmitter: num(vars.MAX_PENDING_PER_SUBMITTER, DEFAULTS.maxPendingPerSubmitter),
  };
}
