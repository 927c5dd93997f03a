/**
 * The unit state machine. Every transition the system makes goes through `transition()`, so the
 * table below is the whole truth about what may follow what. Numbers match receptor's
 * (0 Pending … 4 Canceled); Released is our tombstone, kept so that status/release races answer
 * "released" rather than "unknown unit".
 */
import { fail, ok, type Result } from "./errors.js";

export const UNIT_STATES = ["Pending", "Running", "Succeeded", "Failed", "Canceled", "Released"] as const;
export type UnitState = (typeof UNIT_STATES)[number];

export const STATE_NUMBER: Record<UnitState, number> = {
  Pending: 0,
  Running: 1,
  Succeeded: 2,
  Failed: 3,
  Canceled: 4,
  Released: 5,
};

const TRANSITIONS: Record<UnitState, readonly UnitState[]> = {
  Pending: ["Running", "Failed", "Canceled", "Released"],
  Running: ["Succeeded", "Failed", "Canceled", "Released"],
  Succeeded: ["Released"],
  Failed: ["Released"],
  Canceled: ["Released"],
  Released: [],
};

export function canTransition(from: UnitState, to: UnitState): boolean {
  return TRANSITIONS[from].includes(to);
}

export function transition(from: UnitState, to: UnitState): Result<UnitState> {
  return canTransition(from, to) ? ok(to) : fail("illegal_transition", `a ${from} unit cannot become ${to}`);
}

export function isTerminal(state: UnitState): boolean {
  return state === "Succeeded" || state === "Failed" || state === "Canceled" || state === "Released";
}

/** Pending or Running: the unit holds a slot of its node's capacity. */
export function isActive(state: UnitState): boolean {
  return state === "Pending" || state === "Running";
}
