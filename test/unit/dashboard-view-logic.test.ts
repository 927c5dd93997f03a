/** The dashboard's play recap extraction and its duration and age formatting. */
import { describe, expect, it } from "vitest";
import { formatAge, formatDuration, unitDurationMs } from "../../broker/dashboard/format.js";
import { playRecap } from "../../broker/dashboard/recap.js";
import { linePath, readMetrics, samplePoint } from "../../broker/dashboard/chart-data.js";

describe("playRecap", () => {
  const stats = {
    seq: 9,
    kind: "event" as const,
    event: "playbook_on_stats",
    data: {
      event: "playbook_on_stats",
      event_data: {
        ok: { web1: 3, db1: 2 },
        changed: { web1: 1 },
        failures: { db1: 1 },
        dark: {},
        skipped: { web1: 2 },
        rescued: {},
        ignored: { db1: 1 },
        processed: { web1: 1, db1: 1 },
      },
    },
  };

  it("gives one row per host, sorted, with zeros where a map has no entry", () => {
    expect(playRecap(stats)).toEqual([
      { host: "db1", ok: 2, changed: 0, dark: 0, failures: 1, skipped: 0, rescued: 0, ignored: 1 },
      { host: "web1", ok: 3, changed: 1, dark: 0, failures: 0, skipped: 2, rescued: 0, ignored: 0 },
    ]);
  });

  it("takes the event name from the runner line when the event has none of its own", () => {
    expect(playRecap({ ...stats, event: undefined })).toHaveLength(2);
  });

  it("is null for other events and for stats without data", () => {
    expect(playRecap({ seq: 1, kind: "event", event: "runner_on_ok", data: { event_data: {} } })).toBeNull();
    expect(playRecap({ seq: 1, kind: "line", stdout: "PLAY RECAP" })).toBeNull();
    expect(playRecap({ seq: 1, kind: "event", event: "playbook_on_stats" })).toBeNull();
  });

  it("ignores counts that are not numbers", () => {
    expect(
      playRecap({ seq: 1, kind: "event", event: "playbook_on_stats", data: { event_data: { ok: { h: "3" } } } }),
    ).toEqual([{ host: "h", ok: 0, changed: 0, dark: 0, failures: 0, skipped: 0, rescued: 0, ignored: 0 }]);
  });
});

describe("formatDuration", () => {
  it.each([
    [0, "0ms"],
    [850, "850ms"],
    [1000, "1s"],
    [59_999, "59s"],
    [60_000, "1m 00s"],
    [185_000, "3m 05s"],
    [3_600_000, "1h 00m"],
    [7_620_000, "2h 07m"],
    [86_400_000 * 3 + 3_600_000 * 4, "3d 4h"],
    [-1, "–"],
    [Number.NaN, "–"],
  ])("%d ms is %s", (ms, text) => {
    expect(formatDuration(ms)).toBe(text);
  });
});

describe("formatAge", () => {
  const now = Date.parse("2026-01-01T12:00:00Z");
  it("says how long ago, and – for nothing", () => {
    expect(formatAge("2026-01-01T11:59:55Z", now)).toBe("5s ago");
    expect(formatAge("2026-01-01T11:59:59.500Z", now)).toBe("just now");
    expect(formatAge("2026-01-01T12:00:05Z", now)).toBe("just now");
    expect(formatAge(null, now)).toBe("–");
    expect(formatAge("yesterday", now)).toBe("–");
  });
});

describe("unitDurationMs", () => {
  const now = Date.parse("2026-01-01T12:00:00Z");
  const base = { createdAt: "2026-01-01T11:00:00Z", updatedAt: "2026-01-01T11:30:00Z" };
  it("runs from start to finish, or to now while running", () => {
    const record = {
      ...base,
      state: "Succeeded",
      startedAt: "2026-01-01T11:00:10Z",
      finishedAt: "2026-01-01T11:01:10Z",
    };
    expect(unitDurationMs(record, now)).toBe(60_000);
    expect(unitDurationMs({ ...record, state: "Running", finishedAt: null }, now)).toBe(3_590_000);
  });

  it("is null for a unit that never started", () => {
    expect(unitDurationMs({ ...base, state: "Pending" }, now)).toBeNull();
    expect(unitDurationMs({ ...base, state: "Canceled", startedAt: null, finishedAt: null }, now)).toBeNull();
  });

  it("falls back to creation and last update for index rows without start and finish times", () => {
    expect(unitDurationMs({ ...base, state: "Failed" }, now)).toBe(1_800_000);
    expect(unitDurationMs({ ...base, state: "Running" }, now)).toBe(3_600_000);
  });
});

describe("the overview's chart (chart.js)", () => {
  const text = [
    "# TYPE mesh_queue_depth gauge",
    'mesh_queue_depth{worktype="sh",priority="0"} 3',
    'mesh_queue_depth{worktype="ansible-runner",priority="5"} 2',
    'mesh_pickup_seconds_bucket{worktype="sh",le="+Inf"} 4',
    'mesh_pickup_seconds_sum{worktype="sh"} 2',
    'mesh_pickup_seconds_count{worktype="sh"} 4',
    'mesh_pickup_seconds_sum{worktype="ansible-runner"} 6',
    'mesh_pickup_seconds_count{worktype="ansible-runner"} 1',
    "",
  ].join("\n");

  it("reads queue depth and the pickup histogram's sum and count, over all labels", () => {
    expect(readMetrics(text)).toEqual({ queued: 5, pickupSum: 8, pickupCount: 5 });
  });

  it("samples the mean pickup of the units assigned since the last sample", () => {
    expect(samplePoint(null, { queued: 5, pickupSum: 8, pickupCount: 5 })).toEqual({ queued: 5, pickup: null });
    expect(samplePoint({ pickupSum: 8, pickupCount: 5 }, { queued: 1, pickupSum: 14, pickupCount: 8 })).toEqual({
      queued: 1,
      pickup: 2,
    });
    expect(samplePoint({ pickupSum: 8, pickupCount: 5 }, { queued: 0, pickupSum: 8, pickupCount: 5 })).toEqual({
      queued: 0,
      pickup: null,
    });
  });

  it("draws lines right-aligned, broken where there is no value", () => {
    expect(linePath([], 300, 40)).toBe("");
    expect(linePath([0, 2], 300, 40)).toMatch(/^M\d+(\.\d)? 39\.0L300\.0 1\.0$/);
    expect(linePath([1, null, 1], 300, 40)).toMatch(/^M[\d.]+ [\d.]+l0 0M300\.0 [\d.]+l0 0$/);
    expect(linePath([3], 300, 40)).toBe("M300.0 1.0l0 0");
  });
});
