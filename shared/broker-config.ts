/** The broker's tunables, read from the Worker's vars (wrangler.toml) in one place; in shared/ because `mesh-broker serve` checks them before it starts workerd. */
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

/** The wrangler.toml var behind each setting: the one place a var's name is written. */
export const CONFIG_VARS = {
  maxPayloadBytes: "MAX_PAYLOAD_BYTES",
  pingIntervalMs: "PING_INTERVAL_MS",
  nodeLeaseMs: "NODE_LEASE_MS",
  nodeLostAfterMs: "NODE_LOST_AFTER_MS",
  unitRetentionMs: "UNIT_RETENTION_MS",
  tombstoneRetentionMs: "TOMBSTONE_RETENTION_MS",
  maxPendingUnits: "MAX_PENDING_UNITS",
  submitsPerMinute: "SUBMITS_PER_MINUTE",
  sseKeepaliveMs: "SSE_KEEPALIVE_MS",
  meshEventRetention: "MESH_EVENT_RETENTION",
  helloTimeoutMs: "HELLO_TIMEOUT_MS",
  maxNodes: "MAX_NODES",
  maxPendingPerSubmitter: "MAX_PENDING_PER_SUBMITTER",
} as const satisfies Record<keyof BrokerConfig, string>;

type Vars = Partial<Record<(typeof CONFIG_VARS)[keyof BrokerConfig], string>>;

/** The settings, and one line for each var that is set but is not a positive integer. */
export function parseBrokerConfig(vars: Vars): { config: BrokerConfig; problems: string[] } {
  const config = { ...DEFAULTS };
  const problems: string[] = [];
  for (const key of Object.keys(CONFIG_VARS) as (keyof BrokerConfig)[]) {
    const name = CONFIG_VARS[key];
    const value = vars[name];
    if (value === undefined) continue;
    // Decimal digits only: Number() would also take "0x10", "1e3", " 5" or "1.0", silently
    // reading a var written by mistake as some other number.
    const n = Number(value);
    if (/^[0-9]+$/.test(value) && Number.isSafeInteger(n) && n > 0) config[key] = n;
    else problems.push(`${name} must be a positive integer, got ${JSON.stringify(value)}`);
  }
  return { config, problems };
}

/**
 * The settings the objects run with. A malformed var is not silently replaced here: the Worker
 * refuses every request while one is set (`misconfiguredBroker`, 500 `misconfigured` naming it) and
 * `mesh-broker serve` refuses to start, so what keeps an object going (an alarm, a socket already
 * open) uses the default only until the operator sees the error.
 */
export function brokerConfig(vars: Vars): BrokerConfig {
  return parseBrokerConfig(vars).config;
}

/** The one-line reason the broker refuses to serve, or null when every var is well formed. */
export function misconfiguredBroker(vars: Vars): string | null {
  const { problems } = parseBrokerConfig(vars);
  return problems.length === 0 ? null : `broker misconfigured: ${problems.join("; ")}`;
}
