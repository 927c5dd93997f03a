/** The unit status record served by the HTTP API (receptor's status record, in JSON-friendly names). */
import type { DiskSpace } from "./disk.js";
import type { HealthReport } from "./health.js";
import type { UnitState } from "./states.js";

export interface UnitRecord {
  id: string;
  mesh: string;
  worktype: string;
  /** The node asked for at submit time, if any. */
  targetNode: string | null;
  /** The node the unit was assigned to. */
  node: string | null;
  /** Tags its node must have (`k=v`, or `k`: any value), all of them; [] for any node. */
  tags: string[];
  /** Higher runs first; 0 by default. */
  priority: number;
  params: Record<string, string>;
  state: UnitState;
  /** receptor's numeric state (0 Pending … 4 Canceled, 5 Released). */
  stateNumber: number;
  detail: string;
  payloadSize: number;
  stdoutSize: number;
  exitCode: number | null;
  createdAt: string;
  startedAt: string | null;
  finishedAt: string | null;
  /** A Pending unit not started by then fails "expired" (submit's `ttl`). */
  expiresAt: string | null;
  /** Whether the submitter signed the unit (the signature itself is for the node only). */
  signed: boolean;
  /** The submitter's own name for where the unit came from (`?origin=`; a control-service bridge gives its node id). */
  origin: string | null;
  /** Its own NODE_LOST_AFTER (submit's `lostAfter`), in ms; null: the broker's. */
  lostAfterMs: number | null;
  /** What its work type's output cap cut from the results (the stream holds a marker where), or null. */
  outputCut: { bytes: number; lines: number } | null;
  /** Set while its node is unreachable: the unit still runs there, as far as anyone knows. */
  nodeUnreachableSince: string | null;
  /**
   * How the command really ended, when its node reported that only after the unit was judged
   * (failed "node lost"): the state stays as judged; the results it sent late are stored too.
   */
  lateExit: LateExit | null;
}

export interface LateExit {
  exitCode: number | null;
  signal: string | null;
  /** What the exit means, as the detail would have said ("exit status 0", "killed by signal SIGINT"). */
  detail: string;
  /** When the broker received it. */
  at: string;
  /** Results bytes stored after the verdict. */
  lateBytes: number;
}

export interface NodeStatus {
  nodeId: string;
  connected: boolean;
  /** Silent past its lease (counted only while the broker runs): its units keep running, for now. */
  unreachable: boolean;
  /** When it became unreachable; null while it is not. */
  unreachableSince: string | null;
  /** Silent past the broker's NODE_LOST_AFTER_MS: its units (without a longer own lostAfter) failed "node lost". */
  lost: boolean;
  workTypes: { worktype: string; verifySignature: boolean; allowRuntimeParams: boolean }[];
  capacity: number;
  activeUnits: number;
  tags: Record<string, string>;
  versions: {
    agent: string;
    node: string;
    ansibleRunner: string | null;
    podman: string | null;
    podmanUsable: boolean;
  };
  connectedAt: string | null;
  lastSeen: string | null;
  /** Free space on the node's work dir as last reported; null from agents that do not report it. */
  disk: DiskSpace | null;
  /** Why the node takes no units now ("low disk: 12 MiB free < 256 MiB"), else null. */
  lowDisk: string | null;
  /** Paused by an admin (`meshctl node pause`): finishes its units, takes no new ones. */
  paused: boolean;
  /** The agent left cleanly (one-shot, idle, drained): not connected, and not lost either. */
  left: boolean;
  /** Why the broker gives the node no new units (paused, leaving, failed health check), else null. */
  hold: string | null;
  /** The last health check's report (`meshctl node check`), null if never checked. */
  health: HealthReport | null;
}

export interface MeshStatus {
  mesh: string;
  nodes: NodeStatus[];
  units: { pending: number; running: number };
}

/** A row of the mesh's unit index (`GET …/units`). */
export interface UnitSummary {
  id: string;
  worktype: string;
  targetNode: string | null;
  tags: string[];
  priority: number;
  node: string | null;
  state: UnitState;
  detail: string;
  origin: string | null;
  createdAt: string;
  updatedAt: string;
}
