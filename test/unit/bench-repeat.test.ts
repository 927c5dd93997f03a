import { describe, expect, it } from "vitest";
import { summarise } from "../../scripts/bench/repeat.js";
import type { Row } from "../../scripts/bench/report.js";

const row = (value: number, met = true, item = 1): Row => ({
  item,
  measure: "m",
  result: `run ${value}`,
  comparedWith: "c",
  goal: "g",
  met,
  headline: { value, unit: "×" },
  data: { v: value },
});

describe("bench runs summarised", () => {
  it("speaks with the median run's text and verdict, and gives the spread of the headline", () => {
    const [r] = summarise([{ rows: [row(1.3, false)] }, { rows: [row(1.1, true)] }, { rows: [row(1.2, false)] }]);
    expect(r!.result).toBe("median 1.2 × (min 1.1, max 1.3; 3 runs). Median run: run 1.2");
    expect(r!.met).toBe(false);
    expect(r!.data).toEqual({ samples: [1.3, 1.1, 1.2], unit: "×", runs: [{ v: 1.3 }, { v: 1.1 }, { v: 1.2 }] });
  });

  it("takes the lower of two middle runs, an observed run rather than an average", () => {
    const [r] = summarise([{ rows: [row(4)] }, { rows: [row(1)] }, { rows: [row(3)] }, { rows: [row(2)] }]);
    expect(r!.result).toContain("Median run: run 2");
  });

  it("keeps the rows of an item with two rows apart, and says how many runs failed", () => {
    const rows = summarise([
      { rows: [row(1, true, 3), row(70, true, 6)] },
      { rows: [], error: "broker answered 503" },
      { rows: [row(2, true, 3), row(72, true, 6)] },
    ]);
    expect(rows.map((r) => r.item)).toEqual([3, 6]);
    expect(rows[1]!.result).toMatch(
      /^median 70 × \(min 70, max 72; 2 runs\)\. Median run: run 70; 1 run\(s\) failed: broker answered 503$/,
    );
  });

  it("gives nothing when every run failed (the caller reports the failure)", () => {
    expect(summarise([{ rows: [], error: "x" }])).toEqual([]);
  });

  it("a run without a finite headline is reported as it is, not averaged", () => {
    const broken = { ...row(0), headline: { value: Number.NaN, unit: "s" } };
    const [r] = summarise([{ rows: [broken] }, { rows: [row(2)] }]);
    expect(r!.result).toBe("run 0");
  });
});
