/**
 * Where one unit stands on this agent (UnitRunner), as one value with its allowed moves in one
 * table, as shared/states.ts does for the broker's unit states:
 *  - assigned     taken, the payload not yet asked for;
 *  - downloading  the payload is coming in over the data socket;
 *  - starting     the payload is complete: signature check, params, spawn (may already have happened);
 *  - running      the command runs (started here or adopted after a restart);
 *  - exited       its outcome is known; results still to acknowledge, then `finished` to send;
 *  - reported     `finished` sent on the current link (a new link reports again: back to exited);
 *  - closed       the unit is over for this agent; its spool is gone.
 * A unit that cannot run here (refused signature or params, canceled first, a local failure) goes
 * to reported without running.
 */
export const UNIT_PHASES = ["assigned", "downloading", "starting", "running", "exited", "reported", "closed"] as const;
export type UnitPhase = (typeof UNIT_PHASES)[number];

const MOVES: Record<UnitPhase, readonly UnitPhase[]> = {
  assigned: ["downloading", "reported", "closed"],
  downloading: ["starting", "reported", "closed"],
  starting: ["running", "reported", "closed"],
  running: ["exited", "closed"],
  exited: ["reported", "closed"],
  reported: ["exited", "closed"],
  closed: [],
};

export function canMove(from: UnitPhase, to: UnitPhase): boolean {
  return MOVES[from].includes(to);
}

/** `to`, or a throw: an illegal move is a bug in the runner, never a condition to carry on from. */
export function move(from: UnitPhase, to: UnitPhase): UnitPhase {
  if (!canMove(from, to)) throw new Error(`a unit ${from} on this agent cannot become ${to}`);
  return to;
}

/** What the agent is doing for the unit in each phase, for the detail when it fails locally. */
export const DOING: Record<UnitPhase, string> = {
  assigned: "taking the assignment",
  downloading: "writing the payload",
  starting: "starting the unit",
  running: "running the unit",
  exited: "sending the results",
  reported: "reporting the exit",
  closed: "closing the unit",
};

/**
 * What an `attached` (each new link) does in each phase: wait (a spawn is under way, or the unit is
 * over), resume the results from the broker's offset, or take the payload (again, from where it stands).
 */
export const ON_ATTACH: Record<UnitPhase, "wait" | "resume" | "download"> = {
  assigned: "download",
  downloading: "download",
  starting: "wait",
  running: "resume",
  exited: "resume",
  reported: "resume",
  closed: "wait",
};

/** Before the command runs: a local fault (a full disk, typically) ends the unit rather than being only logged. */
export function beforeRun(phase: UnitPhase): boolean {
  return phase === "assigned" || phase === "downloading" || phase === "starting";
}
