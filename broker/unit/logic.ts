/** Decisions of the Unit object, kept free of storage and sockets so they are tested alone. */
import type { AgentDataMessage } from "../../shared/protocol.js";
import type { UnitState } from "../../shared/states.js";

export type FramePlan =
  | { action: "append"; skip: number }
  | { action: "duplicate" }
  | { action: "gap"; expected: number };

/**
 * Where an incoming frame at `offset` of `length` bytes fits a stream that durably holds `end`
 * bytes. Resent bytes are dropped by offset; a frame that starts past the end would leave a hole.
 */
export function planFrame(end: number, offset: number, length: number): FramePlan {
  if (offset > end) return { action: "gap", expected: end };
  if (offset + length <= end) return { action: "duplicate" };
  return { action: "append", skip: end - offset };
}

type Finished = Extract<AgentDataMessage, { type: "finished" }>;

/** The final state and detail a `finished` report means (receptor's details: "exit status N"). */
export function outcome(finished: Finished, cancelRequested: boolean): { state: UnitState; detail: string } {
  if (finished.canceled || (cancelRequested && finished.exitCode !== 0)) {
    return { state: "Canceled", detail: finished.detail ?? "canceled" };
  }
  if (finished.detail) return { state: "Failed", detail: finished.detail };
  if (finished.exitCode === 0) return { state: "Succeeded", detail: "exit status 0" };
  if (finished.signal) return { state: "Failed", detail: `killed by signal ${finished.signal}` };
  return { state: "Failed", detail: `exit status ${finished.exitCode ?? "unknown"}` };
}
