import { describe, expect, it } from "vitest";
import { DOING, ON_ATTACH, UNIT_PHASES, type UnitPhase, beforeRun, canMove, move } from "../../agent/unit-phase.js";

// biome-ignore format: short names keep the table below one row per phase
const A = "assigned", D = "downloading", S = "starting", R = "running", E = "exited", P = "reported", C = "closed";

/** Every ordered pair of the seven phases of a unit on the agent, with whether the move is allowed. */
// biome-ignore format: one row per from-phase reads as the table it is
const TABLE: [from: UnitPhase, to: UnitPhase, allowed: boolean][] = [
  [A, A, false], [A, D, true],  [A, S, false], [A, R, false], [A, E, false], [A, P, true],  [A, C, true],
  [D, A, false], [D, D, false], [D, S, true],  [D, R, false], [D, E, false], [D, P, true],  [D, C, true],
  [S, A, false], [S, D, false], [S, S, false], [S, R, true],  [S, E, false], [S, P, true],  [S, C, true],
  [R, A, false], [R, D, false], [R, S, false], [R, R, false], [R, E, true],  [R, P, false], [R, C, true],
  [E, A, false], [E, D, false], [E, S, false], [E, R, false], [E, E, false], [E, P, true],  [E, C, true],
  [P, A, false], [P, D, false], [P, S, false], [P, R, false], [P, E, true],  [P, P, false], [P, C, true],
  [C, A, false], [C, D, false], [C, S, false], [C, R, false], [C, E, false], [C, P, false], [C, C, false],
];

describe("a unit's phase on the agent", () => {
  it("the table covers all 49 ordered pairs exactly once", () => {
    const keys = new Set(TABLE.map(([from, to]) => `${from}->${to}`));
    expect(TABLE).toHaveLength(49);
    expect(keys.size).toBe(49);
    for (const from of UNIT_PHASES) for (const to of UNIT_PHASES) expect(keys.has(`${from}->${to}`)).toBe(true);
  });

  it.each(TABLE)("%s -> %s allowed=%s", (from, to, allowed) => {
    expect(canMove(from, to)).toBe(allowed);
    if (allowed) expect(move(from, to)).toBe(to);
    else expect(() => move(from, to)).toThrow(`a unit ${from} on this agent cannot become ${to}`);
  });

  it("every phase but closed can close, and closed is final", () => {
    for (const phase of UNIT_PHASES) expect(canMove(phase, C)).toBe(phase !== C);
    expect(UNIT_PHASES.filter((to) => canMove(C, to))).toEqual([]);
  });

  it("a unit that never ran reaches reported only before running", () => {
    expect(UNIT_PHASES.filter((from) => canMove(from, P))).toEqual([A, D, S, E]);
  });

  it.each([
    [A, "download", true],
    [D, "download", true],
    [S, "wait", true],
    [R, "resume", false],
    [E, "resume", false],
    [P, "resume", false],
    [C, "wait", false],
  ] as [UnitPhase, string, boolean][])(
    "%s: an attach does %s; a local fault ends the unit=%s",
    (phase, onAttach, before) => {
      expect(ON_ATTACH[phase]).toBe(onAttach);
      expect(beforeRun(phase)).toBe(before);
    },
  );

  it("names what the agent does in each phase, for a local failure's detail", () => {
    expect(Object.keys(DOING).sort()).toEqual([...UNIT_PHASES].sort());
    expect([DOING.assigned, DOING.downloading, DOING.starting]).toEqual([
      "taking the assignment",
      "writing the payload",
      "starting the unit",
    ]);
  });
});
