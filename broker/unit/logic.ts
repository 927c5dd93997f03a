/** Decisions of the Unit object, kept free of storage and sockets so they are tested alone. */
import { type AgentDataMessage, INLINE_PAYLOAD_BYTES } from "../../shared/protocol.js";
import type { UnitState } from "../../shared/states.js";

export type FramePlan =
  | { action: "append"; skip: number }
  | { action: "duplicate" }
  | { action: "gap"; expected: number }
  | { action: "window"; oldest: number };

/**
 * Unacknowledged results bytes an agent may hold (agent/runner.ts RESULTS_WINDOW): after a
 * reconnect it resends from the broker's acknowledged end, so no honest frame starts further back.
 */
export const RESULTS_WINDOW = 8 * 1024 * 1024;

/**
 * Where an incoming frame at `offset` of `length` bytes fits a stream that durably holds `end`
 * bytes. Resent bytes are dropped by offset; a frame that starts past the end would leave a hole;
 * one that starts more than the ack window back is no resend but a replay, refused.
 */
export function planFrame(end: number, offset: number, length: number): FramePlan {
  if (offset > end) return { action: "gap", expected: end };
  if (offset < end - RESULTS_WINDOW) return { action: "window", oldest: end - RESULTS_WINDOW };
  if (offset + length <= end) return { action: "duplicate" };
  return { action: "append", skip: end - offset };
}

/**
 * Whether an assignment carries the payload inline, so that the node may start the unit before it
 * attaches: only to a node that asks for it (`wanted`: its work type has inlineStart), for a whole
 * payload small enough, and never for a unit with a cancel on the way. Such a unit counts as
 * attached from then on (planNodeLost): it may be running before the node says anything.
 */
export function planInlineStart(
  doc: { payloadComplete: boolean; payloadSize: number; cancelRequested: boolean },
  wanted: boolean,
): boolean {
  return wanted && doc.payloadComplete && !doc.cancelRequested && doc.payloadSize <= INLINE_PAYLOAD_BYTES;
}

type Finished = Extract<AgentDataMessage, { type: "finished" }>;

/**
 * Go's names for signals (syscall.Signal.String on Linux): receptor's detail for a command killed
 * by one is os.ProcessState.String(), "signal: killed", and AWX shows or matches that text.
 */
const GO_SIGNAL_NAMES: Record<string, string> = {
  SIGHUP: "hangup",
  SIGINT: "interrupt",
  SIGQUIT: "quit",
  SIGILL: "illegal instruction",
  SIGTRAP: "trace/breakpoint trap",
  SIGABRT: "aborted",
  SIGBUS: "bus error",
  SIGFPE: "floating point exception",
  SIGKILL: "killed",
  SIGUSR1: "user defined signal 1",
  SIGSEGV: "segmentation fault",
  SIGUSR2: "user defined signal 2",
  SIGPIPE: "broken pipe",
  SIGALRM: "alarm clock",
  SIGTERM: "terminated",
  SIGXCPU: "CPU time limit exceeded",
  SIGXFSZ: "file size limit exceeded",
  SIGSYS: "bad system call",
};

/** os.ProcessState.String() of a process ended by `signal` (a Node signal name such as "SIGKILL"). */
export function goSignalDetail(signal: string): string {
  return `signal: ${GO_SIGNAL_NAMES[signal] ?? signal}`;
}

/** The final state and detail a `finished` report means, in receptor's (Go's) words: "exit status N", "signal: killed". */
export function outcome(finished: Finished, cancelRequested: boolean): { state: UnitState; detail: string } {
  if (finished.canceled || (cancelRequested && finished.exitCode !== 0)) {
    return { state: "Canceled", detail: finished.detail ?? "canceled" };
  }
  if (finished.detail) return { state: "Failed", detail: finished.detail };
  if (finished.exitCode === 0) return { state: "Succeeded", detail: "exit status 0" };
  if (finished.signal) return { state: "Failed", detail: goSignalDetail(finished.signal) };
  return { state: "Failed", detail: `exit status ${finished.exitCode ?? "unknown"}` };
}

export type LostPlan =
  | { action: "ignore" }
  | { action: "requeue"; detail: string }
  | { action: "fail"; detail: string };

/**
 * What a unit does when the Mesh declares its node lost. A unit the node never attached to
 * cannot have started there, so it goes back to the queue (a pinned one to wait for its node
 * there). One that was attached (payload fetched, maybe running) fails: running it
 * again elsewhere could run a job twice.
 */
export function planNodeLost(doc: Placed, nodeId: string, silentMs: number): LostPlan {
  if (doc.node !== nodeId || (doc.state !== "Pending" && doc.state !== "Running")) return { action: "ignore" };
  const silence = `no word from node ${nodeId} for ${Math.round(silentMs / 1000)} s`;
  if (doc.state === "Pending" && doc.attachedAt === null) {
    // Unplaced, a pinned unit still goes only to its node (dispatch sees to that), but it no longer
    // keeps the lost node on the lease watch list.
    return { action: "requeue", detail: `${waitingFor(doc)} (${silence})` };
  }
  return { action: "fail", detail: `node lost: ${silence}` };
}

/**
 * What a unit does when an admin removes its node: as for a lost node (planNodeLost), one the node
 * never attached to goes back to the queue and one that may have started fails; the detail says
 * why, with no silence to report.
 */
export function planNodeRemoved(doc: Placed, nodeId: string): LostPlan {
  if (doc.node !== nodeId || (doc.state !== "Pending" && doc.state !== "Running")) return { action: "ignore" };
  const removed = `node ${nodeId} was removed by an admin`;
  if (doc.state === "Pending" && doc.attachedAt === null)
    return { action: "requeue", detail: `${waitingFor(doc)} (${removed})` };
  return { action: "fail", detail: removed };
}

/**
 * The node's agent is leaving (one-shot, idle) and refused the unit, assigned before its leave
 * arrived: one it never attached to waits for another node; one it did is refused for good.
 */
export function planNodeLeaving(doc: Placed, nodeId: string): LostPlan {
  if (doc.node !== nodeId || (doc.state !== "Pending" && doc.state !== "Running")) return { action: "ignore" };
  const leaving = `node ${nodeId} is leaving`;
  if (doc.state === "Pending" && doc.attachedAt === null)
    return { action: "requeue", detail: `${waitingFor(doc)} (${leaving})` };
  return { action: "fail", detail: `${leaving} and refused the unit` };
}

const waitingFor = (doc: Pick<Placed, "targetNode">) =>
  `waiting for ${doc.targetNode === null ? "a node" : `node ${doc.targetNode}`}`;

type Placed = { state: UnitState; node: string | null; targetNode: string | null; attachedAt: string | null };

export type UnreachablePlan =
  | { action: "ignore" }
  | { action: "requeue"; detail: string }
  | { action: "mark"; detail: string };

/**
 * What a unit does when its node becomes unreachable. One the node never attached to goes back to
 * the queue at once (it cannot have started there); one that may be running stays as it is, with
 * a detail saying its node is unreachable: it fails only if the node stays silent past lostAfter.
 */
export function planNodeUnreachable(doc: Placed, nodeId: string, since: string): UnreachablePlan {
  if (doc.node !== nodeId || (doc.state !== "Pending" && doc.state !== "Running")) return { action: "ignore" };
  if (doc.state === "Pending" && doc.attachedAt === null) {
    return { action: "requeue", detail: `${waitingFor(doc)} (node ${nodeId} unreachable)` };
  }
  return { action: "mark", detail: `node ${nodeId} unreachable since ${since}; the unit may still be running there` };
}

/** The detail of an active unit whose node is reachable (again). */
export function placedDetail(doc: Pick<Placed, "state" | "node">): string {
  return doc.state === "Running" ? `running on ${doc.node}` : `assigned to ${doc.node}`;
}

/**
 * The detail of a unit judged before its node reported how the command ended (failed "node lost",
 * or canceled as not started while its `started` was on the way): the verdict stays (the state
 * machine does not go back), and says what came afterwards.
 */
export function lateExitDetail(judged: string, nodeId: string | null, exit: string, lateBytes: number): string {
  const node = nodeId === null ? "the node" : `node ${nodeId}`;
  return `${judged}; ${node} reported later: ${exit} (${lateBytes} more bytes of results stored)`;
}

/** The most payload one pull may ask for: what the agent asks (agent/runner.ts), never more. */
export const PULL_MAX = 1024 * 1024;

export type PullPlan = { action: "send"; end: number } | { action: "refuse"; message: string };

/** What a pull is judged against: the payload's size so far, whether it is whole, whether it came framed. */
export interface PayloadState {
  size: number;
  complete: boolean;
  framed: boolean;
}

/**
 * A payload pull on one data socket. The runtime gives the broker no view of what the peer has
 * read (no bufferedAmount), so the broker bounds what it sends instead: pulls follow each other
 * (each starts where the last ended, so a socket is sent each payload byte at most once, at most
 * the payload's size in all) and ask at most PULL_MAX. A node that pulls without reading makes
 * the broker hold at most its unit's payload, not a multiple of it. `next`: where the socket's
 * next pull must start (null before its first).
 *
 * A streaming payload (still arriving) is pulled ahead of what is in: the pull's `end` is where its
 * bytes will have been sent once they arrive (agent-link.ts sends them then). Such an agent does not
 * know the final size until `payload-end`, so a pull past the end of a framed payload gets nothing
 * rather than a refusal, and its pulls go on following each other as the agent made them.
 */
export function planPull(next: number | null, payload: PayloadState, offset: number, length: number): PullPlan {
  if (length > PULL_MAX)
    return { action: "refuse", message: `a payload pull asks for at most ${PULL_MAX} bytes, not ${length}` };
  if (next !== null && offset !== next)
    return {
      action: "refuse",
      message: `payload pulls follow each other on a socket: the next starts at ${next}, not ${offset}`,
    };
  // The agent of a framed payload pulls ahead of what it has until it hears payload-end, and the
  // upload may have ended after its `attached` said streaming but before these pulls came: its pulls
  // still follow each other as it made them (sendAvailable sends nothing past the payload's size).
  // Ending them at the size instead refused the second of a window of pulls (seen in the playbook
  // bench with warm start: window_exceeded, the data socket dropped and re-attached).
  if (!payload.complete || payload.framed) return { action: "send", end: offset + length };
  if (offset > payload.size)
    return { action: "refuse", message: `the payload has ${payload.size} bytes; a pull at ${offset} is past its end` };
  return { action: "send", end: Math.min(offset + length, payload.size) };
}
