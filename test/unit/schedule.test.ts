import { describe, expect, it } from "vitest";
import {
  type ScheduleDoc,
  SYNC_RETRY_MS,
  UPLOAD_WATCH_MS,
  dueActions,
  expiredDetail,
  isExpired,
  nextAlarm,
} from "../../broker/unit/schedule.js";
import { UNIT_STATES } from "../../shared/states.js";

const retention = { unitRetentionMs: 1_000_000, tombstoneRetentionMs: 50_000 };
const t = (ms: number) => new Date(ms).toISOString();
const doc = (over: Partial<ScheduleDoc>): ScheduleDoc => ({
  state: "Pending",
  expiresAt: null,
  finishedAt: null,
  releasedAt: null,
  meshSynced: true,
  ...over,
});

describe("unit alarm schedule", () => {
  it("wakes every UPLOAD_WATCH_MS while a framed payload streams into a Pending or Running unit, and does nothing itself", () => {
    const streaming = { payloadFramed: true, payloadComplete: false };
    expect(nextAlarm(doc(streaming), retention, 1_000)).toBe(1_000 + UPLOAD_WATCH_MS);
    expect(nextAlarm(doc({ ...streaming, state: "Running" }), retention, 1_000)).toBe(1_000 + UPLOAD_WATCH_MS);
    expect(dueActions(doc(streaming), retention, 10 ** 12)).toEqual([]);
    // Whole, or ended: no more waking for it.
    expect(nextAlarm(doc({ payloadFramed: true, payloadComplete: true }), retention, 1_000)).toBeNull();
    expect(nextAlarm(doc({ ...streaming, state: "Canceled", finishedAt: t(0) }), retention, 1_000)).toBe(1_000_000);
  });

  it("a Pending unit without a TTL needs no alarm", () => {
    expect(nextAlarm(doc({}), retention, 0)).toBeNull();
    expect(dueActions(doc({}), retention, 10 ** 12)).toEqual([]);
  });

  it("a Pending unit expires at its TTL, and only while Pending", () => {
    expect(nextAlarm(doc({ expiresAt: t(5_000) }), retention, 0)).toBe(5_000);
    expect(dueActions(doc({ expiresAt: t(5_000) }), retention, 4_999)).toEqual([]);
    expect(dueActions(doc({ expiresAt: t(5_000) }), retention, 5_000)).toEqual(["expire"]);
    expect(dueActions(doc({ state: "Running", expiresAt: t(5_000) }), retention, 9_000)).toEqual([]);
    expect(nextAlarm(doc({ state: "Running", expiresAt: t(5_000) }), retention, 0)).toBeNull();
  });

  it.each(["Succeeded", "Failed", "Canceled"] as const)("a %s unit is reaped after the retention", (state) => {
    const finished = doc({ state, finishedAt: t(1_000), expiresAt: t(500) });
    expect(nextAlarm(finished, retention, 2_000)).toBe(1_001_000);
    expect(dueActions(finished, retention, 1_000_999)).toEqual([]);
    expect(dueActions(finished, retention, 1_001_000)).toEqual(["reap"]);
  });

  it("a Released tombstone is purged after its own retention, counted from the release", () => {
    const released = doc({ state: "Released", finishedAt: t(1_000), releasedAt: t(9_000) });
    expect(nextAlarm(released, retention, 9_000)).toBe(59_000);
    expect(dueActions(released, retention, 59_000)).toEqual(["purge"]);
  });

  it("an unsynced unit retries its notification soon, before anything else due", () => {
    const unsynced = doc({ state: "Failed", finishedAt: t(0), meshSynced: false });
    expect(nextAlarm(unsynced, retention, 100)).toBe(100 + SYNC_RETRY_MS);
    expect(dueActions(unsynced, retention, 2_000_000)).toEqual(["sync", "reap"]);
  });

  it("never schedules in the past, and every state is covered", () => {
    for (const state of UNIT_STATES) {
      const at = nextAlarm(doc({ state, expiresAt: t(0), finishedAt: t(0), releasedAt: t(0) }), retention, 10 ** 9);
      if (at !== null) expect(at).toBeGreaterThanOrEqual(10 ** 9);
    }
  });

  it("a Pending unit past its TTL is expired without its alarm: placing and starting check it (the runtime drops an alarm after its retries fail)", () => {
    expect(isExpired(doc({ expiresAt: t(5_000) }), 4_999)).toBe(false);
    expect(isExpired(doc({ expiresAt: t(5_000) }), 5_000)).toBe(true);
    expect(isExpired(doc({}), 10 ** 12)).toBe(false);
    expect(isExpired(doc({ state: "Running", expiresAt: t(5_000) }), 10 ** 12)).toBe(false);
    expect(expiredDetail({ createdAt: t(0), expiresAt: t(20_000) })).toBe(
      "expired: not started within its time to live (20s)",
    );
  });
});
