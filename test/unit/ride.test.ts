import { describe, expect, it } from "vitest";
import { MeshApiError } from "../../meshctl/client.js";
import { Outage, isRetryable } from "../../meshctl/ride.js";

const unreachable = new MeshApiError("unreachable", "cannot reach the broker at http://b: ECONNREFUSED", 0);

describe("isRetryable", () => {
  it.each([
    ["the broker was not reached", unreachable, true],
    ["the broker failed (502 from a proxy during a deploy)", new MeshApiError("http_error", "HTTP 502", 502), true],
    ["a stream that broke", new TypeError("terminated"), true],
    ["an unknown unit", new MeshApiError("unknown_unit", "no such unit", 404), false],
    ["a revoked token", new MeshApiError("unauthorized", "revoked", 401), false],
  ])("%s: %s", (_name, error, retryable) => {
    expect(isRetryable(error)).toBe(retryable);
  });
});

/** An outage on a fake clock: each wait moves time forward by the backoff drawn. */
function ridden(retryForMs: number) {
  let now = 0;
  const notices: string[] = [];
  const waits: number[] = [];
  const outage = new Outage(
    { retryForMs, notice: (m) => notices.push(m) },
    () => now,
    async (ms) => {
      waits.push(ms);
      now += ms;
    },
  );
  return { outage, notices, waits, advance: (ms: number) => (now += ms), at: () => now };
}

describe("Outage", () => {
  it("keeps retrying for retryFor, tells once, then gives up with the error", async () => {
    const { outage, notices, at } = ridden(5 * 60_000);
    let failures = 0;
    await expect(
      (async () => {
        for (;;) {
          failures++;
          await outage.failed(unreachable);
        }
      })(),
    ).rejects.toBe(unreachable);
    expect(at()).toBeGreaterThanOrEqual(5 * 60_000);
    expect(at()).toBeLessThan(5 * 60_000 + 10_000);
    expect(failures).toBeGreaterThan(20);
    expect(notices).toEqual([
      "broker unreachable (cannot reach the broker at http://b: ECONNREFUSED); retrying for up to 5m",
    ]);
  });

  it("backs off: waits grow towards 10 s and never exceed it", async () => {
    const { outage, waits } = ridden(60 * 60_000);
    for (let i = 0; i < 40; i++) await outage.failed(unreachable);
    expect(Math.max(...waits)).toBeLessThanOrEqual(10_000);
    expect(waits.slice(-20).reduce((a, b) => a + b, 0) / 20).toBeGreaterThan(2_000);
  });

  it("a blip shorter than 2 s says nothing; the broker answering starts a fresh outage", async () => {
    const { outage, notices, advance } = ridden(60_000);
    await outage.failed(unreachable);
    outage.reached();
    advance(59_000);
    await outage.failed(unreachable);
    expect(notices).toEqual([]);
  });

  it("an answer retrying cannot change ends it at once", async () => {
    const { outage, waits } = ridden(60_000);
    const gone = new MeshApiError("unit_released", "released", 410);
    await expect(outage.failed(gone)).rejects.toBe(gone);
    expect(waits).toEqual([]);
  });
});
