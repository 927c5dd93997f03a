import { describe, expect, it } from "vitest";
import { formatDuration, parseDuration } from "../../shared/duration.js";

describe("parseDuration", () => {
  it.each([
    ["90", 90_000],
    ["90s", 90_000],
    ["1h20m30s", 4_830_000],
    ["30m10s", 1_810_000],
    ["500ms", 500],
    ["1.5s", 1_500],
    ["2d", 172_800_000],
    ["1m500ms", 60_500],
  ])("%s is %i ms", (text, ms) => {
    expect(parseDuration(text)).toEqual({ ok: true, value: ms });
  });

  it.each(["", "0", "0s", "-5s", "5x", "s", "1h 2m", "1h2", "abc", "9999d", "1e3s", " 5s"])(
    "refuses %j with a code",
    (text) => {
      const result = parseDuration(text);
      expect(result.ok).toBe(false);
      if (!result.ok) {
        expect(result.error.code).toBe("bad_request");
        expect(result.error.message).not.toContain("\n");
      }
    },
  );
});

describe("formatDuration", () => {
  it.each([
    [500, "500ms"],
    [1_000, "1s"],
    [90_000, "1m30s"],
    [4_830_000, "1h20m30s"],
    [86_400_000, "1d"],
    [3_600_000, "1h"],
  ])("%i ms is %s", (ms, text) => {
    expect(formatDuration(ms)).toBe(text);
  });

  it("round-trips through parseDuration", () => {
    for (const ms of [1_000, 59_000, 61_000, 3_599_000, 90_061_000]) {
      expect(parseDuration(formatDuration(ms))).toEqual({ ok: true, value: ms });
    }
  });
});
