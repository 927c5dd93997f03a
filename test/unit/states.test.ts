import { describe, expect, it } from "vitest";
import {
  STATE_NUMBER,
  UNIT_STATES,
  type UnitState,
  canTransition,
  isActive,
  isTerminal,
  transition,
} from "../../shared/states.js";

// biome-ignore format: short names keep the table below one row per state
const P = "Pending", R = "Running", S = "Succeeded", F = "Failed", C = "Canceled", X = "Released";

/** Every ordered pair of the six states, with whether the transition is allowed. */
// biome-ignore format: one row per from-state reads as the table it is
const TABLE: [from: UnitState, to: UnitState, allowed: boolean][] = [
  [P, P, false], [P, R, true], [P, S, false], [P, F, true], [P, C, true], [P, X, true],
  [R, P, false], [R, R, false], [R, S, true], [R, F, true], [R, C, true], [R, X, true],
  [S, P, false], [S, R, false], [S, S, false], [S, F, false], [S, C, false], [S, X, true],
  [F, P, false], [F, R, false], [F, S, false], [F, F, false], [F, C, false], [F, X, true],
  [C, P, false], [C, R, false], [C, S, false], [C, F, false], [C, C, false], [C, X, true],
  [X, P, false], [X, R, false], [X, S, false], [X, F, false], [X, C, false], [X, X, false],
];

describe("unit state machine", () => {
  it("the table covers all 36 ordered pairs exactly once", () => {
    expect(TABLE).toHaveLength(36);
    const keys = new Set(TABLE.map(([from, to]) => `${from}->${to}`));
    expect(keys.size).toBe(36);
    for (const from of UNIT_STATES) for (const to of UNIT_STATES) expect(keys.has(`${from}->${to}`)).toBe(true);
  });

  it.each(TABLE)("%s -> %s allowed=%s", (from, to, allowed) => {
    expect(canTransition(from, to)).toBe(allowed);
    const result = transition(from, to);
    if (allowed) {
      expect(result).toEqual({ ok: true, value: to });
    } else {
      expect(result.ok).toBe(false);
      if (!result.ok) {
        expect(result.error.code).toBe("illegal_transition");
        expect(result.error.message).toContain(from);
        expect(result.error.message).toContain(to);
      }
    }
  });

  it("has no self transitions", () => {
    for (const s of UNIT_STATES) expect(canTransition(s, s)).toBe(false);
  });

  it.each([
    [P, false, true],
    [R, false, true],
    [S, true, false],
    [F, true, false],
    [C, true, false],
    [X, true, false],
  ] as [UnitState, boolean, boolean][])("%s: terminal=%s active=%s", (state, terminal, active) => {
    expect(isTerminal(state)).toBe(terminal);
    expect(isActive(state)).toBe(active);
  });

  it("numbers states as receptor does", () => {
    expect(STATE_NUMBER).toEqual({ Pending: 0, Running: 1, Succeeded: 2, Failed: 3, Canceled: 4, Released: 5 });
    expect(UNIT_STATES).toEqual([P, R, S, F, C, X]);
  });
});
