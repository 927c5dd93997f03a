import { describe, expect, it } from "vitest";
import { leaseVerdict, nextLeaseCheck } from "../../broker/mesh/lease.js";

const times = { leaseMs: 15_000, graceMs: 15_000 };

describe("leaseVerdict", () => {
  it.each([
    [0, "alive"],
    [15_000, "alive"],
    [15_001, "lost"],
    [30_000, "lost"],
    [30_001, "expired"],
    [3_600_000, "expired"],
    [-5_000, "alive"], // a clock step backwards never condemns a node
  ] as const)("silent %i ms is %s", (silent, verdict) => {
    expect(leaseVerdict(100_000, 100_000 + silent, times)).toBe(verdict);
  });
});

describe("nextLeaseCheck", () => {
  it("is null with nothing to watch", () => {
    expect(nextLeaseCheck([], 0, times)).toBeNull();
  });

  it("wakes just past the next boundary of the most urgent node", () => {
    const now = 1_000_000;
    expect(nextLeaseCheck([now - 14_000], now, times)).toBe(now - 14_000 + 15_000 + 1);
    expect(nextLeaseCheck([now - 29_000], now, times)).toBe(now - 29_000 + 30_000 + 1);
  });

  it("never sleeps longer than a third of the lease, so pings are persisted often enough", () => {
    const now = 1_000_000;
    expect(nextLeaseCheck([now], now, times)).toBe(now + 5_000);
    expect(nextLeaseCheck([now - 60_000], now, times)).toBe(now + 5_000);
  });

  it("is always in the future, and each verdict changes only at a boundary it wakes for", () => {
    for (let seen = 0; seen <= 40_000; seen += 250) {
      const now = 40_000;
      const next = nextLeaseCheck([seen], now, times)!;
      expect(next).toBeGreaterThan(now);
      const before = leaseVerdict(seen, now, times);
      for (let t = now; t < next; t += 100) expect(leaseVerdict(seen, t, times)).toBe(before);
    }
  });

  it("keeps heartbeats at least a second apart for tiny leases", () => {
    expect(nextLeaseCheck([0], 0, { leaseMs: 300, graceMs: 300 })).toBe(301);
    expect(nextLeaseCheck([-10_000], 0, { leaseMs: 300, graceMs: 300 })).toBe(1000);
  });
});
