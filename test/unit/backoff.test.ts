import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { backoffDelay, reconnectDelay } from "../../shared/backoff.js";

const ALMOST_ONE = 1 - Number.EPSILON / 2; // the largest double below 1
const opts = (random: number, baseMs = 100, maxMs = 10_000) => ({ baseMs, maxMs, random: () => random });

describe("backoffDelay", () => {
  it("is 0 when random draws 0", () => {
    for (let attempt = 0; attempt < 40; attempt++) expect(backoffDelay(attempt, opts(0))).toBe(0);
  });

  it("stays below the exponential cap when random draws just under 1", () => {
    expect(ALMOST_ONE).toBeLessThan(1);
    expect(backoffDelay(0, opts(ALMOST_ONE))).toBe(99);
    expect(backoffDelay(1, opts(ALMOST_ONE))).toBe(199);
    expect(backoffDelay(2, opts(ALMOST_ONE))).toBe(399);
    expect(backoffDelay(3, opts(ALMOST_ONE))).toBe(799);
  });

  it("grows exponentially with the attempt", () => {
    const half = (attempt: number) => backoffDelay(attempt, opts(0.5, 100, 1_000_000));
    expect([0, 1, 2, 3, 4, 5].map(half)).toEqual([50, 100, 200, 400, 800, 1600]);
  });

  it("is capped at maxMs", () => {
    expect(backoffDelay(7, opts(ALMOST_ONE, 100, 10_000))).toBe(9999);
    expect(backoffDelay(20, opts(ALMOST_ONE, 100, 10_000))).toBe(9999);
    expect(backoffDelay(1000, opts(ALMOST_ONE, 250, 15_000))).toBe(14_999);
    expect(backoffDelay(1000, opts(0.5, 250, 15_000))).toBe(7500);
  });

  it("does not overflow for huge attempts", () => {
    const delay = backoffDelay(Number.MAX_SAFE_INTEGER, opts(ALMOST_ONE, 1, 2 ** 40));
    expect(Number.isFinite(delay)).toBe(true);
    expect(delay).toBe(2 ** 30 - 1);
  });

  it("uses Math.random by default and stays in bounds", () => {
    for (let i = 0; i < 100; i++) {
      const delay = backoffDelay(3, { baseMs: 100, maxMs: 10_000 });
      expect(Number.isInteger(delay)).toBe(true);
      expect(delay).toBeGreaterThanOrEqual(0);
      expect(delay).toBeLessThan(800);
    }
  });

  it("property: an integer in [0, min(maxMs, baseMs * 2^attempt))", () => {
    fc.assert(
      fc.property(
        fc.nat({ max: 100 }),
        fc.integer({ min: 1, max: 10_000 }),
        fc.integer({ min: 1, max: 1_000_000 }),
        fc.double({ min: 0, max: ALMOST_ONE, noNaN: true }),
        (attempt, baseMs, maxMs, r) => {
          const delay = backoffDelay(attempt, { baseMs, maxMs, random: () => r });
          const cap = Math.min(maxMs, baseMs * 2 ** Math.min(attempt, 30));
          expect(Number.isInteger(delay)).toBe(true);
          expect(delay).toBeGreaterThanOrEqual(0);
          expect(delay).toBeLessThan(cap);
          expect(delay).toBeLessThan(maxMs);
        },
      ),
    );
  });
});

describe("reconnectDelay", () => {
  const draw = (random: number) => ({ baseMs: 2000, maxMs: 30_000, random: () => random });

  it("puts the first try after a drop within baseMs", () => {
    expect(reconnectDelay(0, draw(0))).toBe(0);
    expect(reconnectDelay(0, draw(0.5))).toBe(1000);
    expect(reconnectDelay(0, draw(ALMOST_ONE))).toBe(1999);
    expect(reconnectDelay(1500, draw(ALMOST_ONE))).toBe(1999);
  });

  it("waits at most as long as the link has been down, up to maxMs", () => {
    expect([2000, 5000, 20_000, 30_000, 60_000, 10 ** 9].map((down) => reconnectDelay(down, draw(ALMOST_ONE)))).toEqual(
      [1999, 4999, 19_999, 29_999, 29_999, 29_999],
    );
  });

  it("property: an integer in [0, min(maxMs, max(baseMs, downMs)))", () => {
    fc.assert(
      fc.property(
        fc.nat({ max: 10 ** 7 }),
        fc.integer({ min: 1, max: 10_000 }),
        fc.integer({ min: 1, max: 1_000_000 }),
        fc.double({ min: 0, max: ALMOST_ONE, noNaN: true }),
        (downMs, baseMs, maxMs, r) => {
          const delay = reconnectDelay(downMs, { baseMs, maxMs, random: () => r });
          expect(Number.isInteger(delay)).toBe(true);
          expect(delay).toBeGreaterThanOrEqual(0);
          expect(delay).toBeLessThan(Math.min(maxMs, Math.max(baseMs, downMs)));
        },
      ),
    );
  });

  it("property: an agent is back within max(baseMs, outage) of the broker's return, whatever it draws", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 30_000 }),
        fc.infiniteStream(fc.double({ min: 0, max: ALMOST_ONE, noNaN: true })),
        (outageMs, draws) => {
          const random = () => draws.next().value as number;
          const options = { baseMs: 2000, maxMs: 30_000, random };
          // Tries at t ms after the drop until one finds the broker up again (t >= outageMs).
          let t = reconnectDelay(0, options);
          while (t < outageMs) t += reconnectDelay(t, options);
          expect(t - outageMs).toBeLessThan(Math.max(2000, outageMs));
        },
      ),
    );
  });
});
