/**
 * Our records in receptor's shapes (field names, value types and JSON as Go's encoding/json
 * writes it), for the control service's replies. Pure: the caller fetches, these only translate.
 *
 * The bridge stands for the broker as one receptor node; every connected node of the mesh is its
 * peer. Every unit is a "remote" unit to that node, as in receptor when a controller submits to an
 * execution node, so WorkType is "remote" and the real work type is ExtraData.RemoteWorkType.
 */
import type { MeshStatus, UnitRecord } from "../../shared/unit.js";

/**
 * The receptor version `status` reports: the release whose control protocol, records and error
 * texts the bridge follows. receptorctl compares it with its own version and warns on a
 * mismatch, so receptorctl 1.4.9 prints no warning.
 */
export const RECEPTOR_PROTOCOL_VERSION = "1.4.9";

/** Go's zero time.Time, which receptor writes for "no expiration". */
const ZERO_TIME = "0001-01-01T00:00:00Z";
/** netceptor's ConnType for a plain stream service. */
const CONN_TYPE_STREAM = 1;

/**
 * JSON as Go writes it: map keys in byte order (build maps with `goMap`), and <, >, & and the
 * line separators escaped. Struct-shaped objects keep their declared field order.
 */
export function goJson(value: unknown): string {
  return JSON.stringify(value)
    .replace(/</g, "\\u003c")
    .replace(/>/g, "\\u003e")
    .replace(/&/g, "\\u0026")
    .replace(/\u2028/g, "\\u2028")
    .replace(/\u2029/g, "\\u2029");
}

/**
 * A Go map: keys sorted. (JS puts integer-like keys first whatever the insertion order, so an id
 * such as "12345678" may still lead; JSON readers do not care about order.)
 */
export function goMap<T>(entries: Iterable<[string, T]>): Record<string, T> {
  return Object.fromEntries([...entries].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

/** fmt.Sprint of a time.Duration: "0s", "850ns", "1.5µs", "2.25ms", "1m30.5s", "2h0m0s". */
export function goDuration(ns: number): string {
  const n = Math.round(Math.abs(ns));
  const sign = ns < 0 ? "-" : "";
  if (n === 0) return "0s";
  const fraction = (value: number, unit: number, digits: number) => {
    const whole = Math.floor(value / unit);
    const rest = String(value % unit)
      .padStart(digits, "0")
      .replace(/0+$/, "");
    return rest ? `${whole}.${rest}` : `${whole}`;
  };
  if (n < 1_000) return `${sign}${n}ns`;
  if (n < 1_000_000) return `${sign}${fraction(n, 1_000, 3)}µs`;
  if (n < 1_000_000_000) return `${sign}${fraction(n, 1_000_000, 6)}ms`;
  const hours = Math.floor(n / 3_600_000_000_000);
  const minutes = Math.floor((n % 3_600_000_000_000) / 60_000_000_000);
  const seconds = `${fraction(n % 60_000_000_000, 1_000_000_000, 9)}s`;
  if (hours > 0) return `${sign}${hours}h${minutes}m${seconds}`;
  return minutes > 0 ? `${sign}${minutes}m${seconds}` : `${sign}${seconds}`;
}

/** Our Released tombstone is state 5, past receptor's 0–4: a client reading StateName sees "Released". */
export function unitStatusRecord(unit: UnitRecord): Record<string, unknown> {
  const released = unit.state === "Released";
  return goMap<unknown>([
    ["Detail", unit.detail],
    [
      "ExtraData",
      {
        RemoteNode: unit.node ?? unit.targetNode ?? "",
        RemoteWorkType: unit.worktype,
        // receptor's Status() drops secret_* params (remote_work.go); they are for the node only.
        RemoteParams: goMap(Object.entries(unit.params).filter(([key]) => !key.toLowerCase().startsWith("secret_"))),
        // receptor learns the remote id once the remote node took the unit; ours is the same id.
        RemoteUnitID: unit.node === null ? "" : unit.id,
        RemoteStarted: unit.node !== null,
        LocalCancelled: unit.state === "Canceled" || released,
        LocalReleased: released,
        TLSClient: "",
        Expiration: unit.expiresAt ?? ZERO_TIME,
        SignWork: unit.signed,
      },
    ],
    ["State", unit.stateNumber],
    ["StateName", unit.state],
    ["StdoutSize", unit.stdoutSize],
    ["WorkType", "remote"],
  ]);
}

export function workListReply(units: UnitRecord[]): Record<string, unknown> {
  return goMap(units.map((u) => [u.id, unitStatusRecord(u)]));
}

export interface BridgeInfo {
  nodeId: string;
  cpuCount: number;
  memoryMiB: number;
  now: Date;
}

/** Nodes a receptor mesh could route to: connected, within their lease. */
export function reachableNodes(status: MeshStatus): MeshStatus["nodes"] {
  return status.nodes.filter((n) => n.connected && !n.lost);
}

/**
 * receptor's `status`: the bridge is the local node, linked at cost 1 to each reachable node. Nodes
 * that are gone or lost are left out, as receptor drops a node once its advertisements lapse.
 * `requestedFields` (receptorctl sends ["Version"] first) keeps only the fields asked for.
 */
export function meshStatusReply(
  status: MeshStatus,
  bridge: BridgeInfo,
  requestedFields: string[] | null,
): Record<string, unknown> {
  const nodes = reachableNodes(status).filter((n) => n.nodeId !== bridge.nodeId);
  const ads = [
    {
      NodeID: bridge.nodeId,
      Service: "control",
      Time: bridge.now.toISOString(),
      ConnType: CONN_TYPE_STREAM,
      Tags: null,
      WorkCommands: null,
    },
    ...nodes.map((n) => ({
      NodeID: n.nodeId,
      Service: "control",
      Time: n.lastSeen ?? bridge.now.toISOString(),
      ConnType: CONN_TYPE_STREAM,
      // Go writes a nil map or slice as null.
      Tags: Object.keys(n.tags).length > 0 ? goMap(Object.entries(n.tags)) : null,
      WorkCommands:
        n.workTypes.length > 0 ? n.workTypes.map((w) => ({ WorkType: w.worktype, Secure: w.verifySignature })) : null,
    })),
  ].sort((a, b) => (a.NodeID < b.NodeID ? -1 : a.NodeID > b.NodeID ? 1 : 0));
  const fields: Record<string, unknown> = {
    Advertisements: ads,
    Connections: nodes.map((n) => ({ NodeID: n.nodeId, Cost: 1 })),
    KnownConnectionCosts: goMap([
      [bridge.nodeId, goMap(nodes.map((n) => [n.nodeId, 1]))],
      ...nodes.map((n): [string, Record<string, number>] => [n.nodeId, { [bridge.nodeId]: 1 }]),
    ]),
    NodeID: bridge.nodeId,
    RoutingTable: goMap(nodes.map((n) => [n.nodeId, n.nodeId])),
    SystemCPUCount: bridge.cpuCount,
    SystemMemoryMiB: bridge.memoryMiB,
    Version: RECEPTOR_PROTOCOL_VERSION,
  };
  const wanted = requestedFields ?? Object.keys(fields);
  return goMap(Object.entries(fields).filter(([key]) => wanted.includes(key)));
}

export type PingOutcome = { ok: true; from: string; ns: number } | { ok: false; error: string };

export function pingReply(outcome: PingOutcome): Record<string, unknown> {
  return outcome.ok
    ? { From: outcome.from, Success: true, Time: outcome.ns, TimeStr: goDuration(outcome.ns) }
    : { Error: outcome.error, Success: false };
}
