import { describe, expect, it } from "vitest";
import { arrivalRate, percentile } from "../../scripts/bench/stats.js";

describe("arrivalRate", () => {
  it("is zero for no events", () => {
    expect(arrivalRate([])).toEqual({ peakPerSecond: 0, meanPerSecond: 0 });
  });

  it("finds the busiest window, whatever the order of the times", () => {
    // 3 within [1000, 2000), then 2 more a second later.
    expect(arrivalRate([2500, 1000, 1100, 1999, 3100]).peakPerSecond).toBe(3);
  });

  it("a window is half-open: events windowMs apart are not in one window", () => {
    expect(arrivalRate([0, 1000]).peakPerSecond).toBe(1);
    expect(arrivalRate([0, 999]).peakPerSecond).toBe(2);
  });

  it("scales a shorter window to a per-second rate", () => {
    expect(arrivalRate([0, 10, 20, 500], 100).peakPerSecond).toBe(30);
  });

  it("the mean rate is the gaps between first and last", () => {
    expect(arrivalRate([0, 500, 1000, 1500, 2000]).meanPerSecond).toBe(2);
    expect(arrivalRate([7]).meanPerSecond).toBe(1);
  });
});

describe("percentile", () => {
  it("is nearest-rank", () => {
    expect(percentile([3, 1, 2], 50)).toBe(2);
  });
});
