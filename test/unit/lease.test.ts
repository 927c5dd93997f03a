import { describe, expect, it } from "vitest";
import { leaseVerdict, nextLeaseCheck, planLease, silence, unreachableSince } from "../../broker/mesh/lease.js";

const times = { leaseMs: 15_000, lostAfterMs: 600_000 };

describe("silence", () => {
  // The broker's own downtime is never a node's silence: it counts from the later of the node's
  // last word and this broker instance's start.
  it.each([
    ["heard after the broker started", 1_000, 500, 11_000, 10_000],
    ["last heard before a restart: counted from the restart", 1_000, 60_000, 70_000, 10_000],
    ["never heard: counted from the broker's start", null, 60_000, 61_000, 1_000],
    ["a clock step backwards is no silence", 50_000, 0, 40_000, 0],
  ] as const)("%s", (_name, lastSeen, brokerSince, now, expected) => {
    expect(silence(lastSeen, brokerSince, now)).toBe(expected);
  });
});

describe("leaseVerdict", () => {
  it.each([
    [0, "alive"],
    [15_000, "alive"],
    [15_001, "unreachable"],
    [300_000, "unreachable"],
    [600_000, "unreachable"],
    [600_001, "lost"],
    [3_600_000, "lost"],
  ] as const)("silent %i ms is %s", (silent, verdict) => {
    expect(leaseVerdict(silent, times)).toBe(verdict);
  });

  it("a lost-after shorter than the lease never skips unreachable", () => {
    expect(leaseVerdict(15_001, { leaseMs: 15_000, lostAfterMs: 1_000 })).toBe("lost");
    expect(leaseVerdict(15_000, { leaseMs: 15_000, lostAfterMs: 1_000 })).toBe("alive");
  });

  it("a broker down longer than lease + lost-after judges nobody when it comes back", () => {
    const lastSeen = 0;
    const restart = 3_600_000;
    expect(leaseVerdict(silence(lastSeen, restart, restart + 1), times)).toBe("alive");
    expect(leaseVerdict(silence(lastSeen, restart, restart + 15_001), times)).toBe("unreachable");
    expect(unreachableSince(lastSeen, restart, times)).toBe(restart + 15_000);
  });

  it("a node heard after the broker started is unreachable from its last word + lease", () => {
    expect(unreachableSince(20_000, 5_000, times)).toBe(35_000);
  });
});

describe("planLease", () => {
  const node = (silentMs: number, over: Partial<Parameters<typeof planLease>[0]> = {}) => ({
    silentMs,
    markedUnreachable: false,
    reportedLost: false,
    units: [
      { id: "default", lostAfterMs: null },
      { id: "patient", lostAfterMs: 3_600_000 },
      { id: "hasty", lostAfterMs: 60_000 },
    ],
    ...over,
  });
  it.each([
    ["alive: nothing", node(10_000), { markUnreachable: false, reportLost: false, fail: [] }],
    [
      "just past the lease: unreachable once, nothing fails",
      node(15_001),
      { markUnreachable: true, reportLost: false, fail: [] },
    ],
    [
      "already marked: not announced again",
      node(30_000, { markedUnreachable: true }),
      { markUnreachable: false, reportLost: false, fail: [] },
    ],
    [
      "past a unit's own short lost-after: that unit fails",
      node(60_001, { markedUnreachable: true }),
      { markUnreachable: false, reportLost: false, fail: ["hasty"] },
    ],
    [
      "past the broker's lost-after: lost once, the patient unit waits",
      node(600_001, { markedUnreachable: true }),
      { markUnreachable: false, reportLost: true, fail: ["default", "hasty"] },
    ],
    [
      "lost already announced: not again",
      node(700_000, { markedUnreachable: true, reportedLost: true }),
      { markUnreachable: false, reportLost: false, fail: ["default", "hasty"] },
    ],
    [
      "first seen long after (a check that slept): unreachable and lost in one step",
      node(4_000_000),
      { markUnreachable: true, reportLost: true, fail: ["default", "patient", "hasty"] },
    ],
  ] as const)("%s", (_name, input, plan) => {
    expect(planLease(input, times)).toEqual(plan);
  });
});

describe("nextLeaseCheck", () => {
  const lostAfters = [600_000];
  it("is null with nothing to watch", () => {
    expect(nextLeaseCheck([], 0, 15_000, lostAfters)).toBeNull();
  });

  it("wakes just past the next boundary of the most urgent node", () => {
    const now = 1_000_000;
    expect(nextLeaseCheck([14_000], now, 15_000, lostAfters)).toBe(now + 1_000 + 1);
    expect(nextLeaseCheck([599_000], now, 15_000, lostAfters)).toBe(now + 1_000 + 1);
    expect(nextLeaseCheck([59_000], now, 15_000, [...lostAfters, 60_000])).toBe(now + 1_000 + 1);
  });

  it("never sleeps longer than a third of the lease, so pings are persisted often enough", () => {
    const now = 1_000_000;
    expect(nextLeaseCheck([0], now, 15_000, lostAfters)).toBe(now + 5_000);
    expect(nextLeaseCheck([60_000], now, 15_000, lostAfters)).toBe(now + 5_000);
  });

  it("a boundary crossed exactly now (silent = lease + 1) is not woken for again", () => {
    const now = 1_000_000;
    expect(nextLeaseCheck([15_001], now, 15_000, lostAfters)).toBe(now + 5_000);
  });

  it("is always in the future, and each verdict changes only at a boundary it wakes for", () => {
    const small = { leaseMs: 2_000, lostAfterMs: 6_000 };
    for (let silent = 0; silent <= 8_000; silent += 50) {
      const now = 40_000;
      const next = nextLeaseCheck([silent], now, small.leaseMs, [small.lostAfterMs])!;
      expect(next).toBeGreaterThan(now);
      const before = leaseVerdict(silent, small);
      for (let t = now; t < next; t += 10) expect(leaseVerdict(silent + (t - now), small)).toBe(before);
    }
  });

  it("keeps heartbeats at least a second apart for tiny leases", () => {
    expect(nextLeaseCheck([0], 0, 300, [600])).toBe(301);
    expect(nextLeaseCheck([10_000], 0, 300, [600])).toBe(1000);
  });
});
