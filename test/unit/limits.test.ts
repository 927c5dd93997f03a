import { describe, expect, it } from "vitest";
import { RateLimiter } from "../../broker/mesh/limits.js";

describe("RateLimiter", () => {
  it("lets a burst of the per-minute rate through, then refuses with the wait until the next", () => {
    const limiter = new RateLimiter(60);
    for (let i = 0; i < 60; i++) expect(limiter.take("t", 0).ok).toBe(true);
    expect(limiter.take("t", 0)).toEqual({ ok: false, retryAfterMs: 1000 });
    expect(limiter.take("t", 999).ok).toBe(false);
    expect(limiter.take("t", 1000).ok).toBe(true);
  });

  it("keeps one bucket per key", () => {
    const limiter = new RateLimiter(1);
    expect(limiter.take("a", 0).ok).toBe(true);
    expect(limiter.take("a", 0).ok).toBe(false);
    expect(limiter.take("b", 0).ok).toBe(true);
  });

  it("refills continuously up to the burst size, never beyond", () => {
    const limiter = new RateLimiter(6);
    for (let i = 0; i < 6; i++) limiter.take("t", 0);
    expect(limiter.take("t", 30_000).ok).toBe(true); // 3 refilled by then
    let allowed = 0;
    for (let i = 0; i < 20; i++) if (limiter.take("t", 10 ** 9).ok) allowed++;
    expect(allowed).toBe(6);
  });

  it("bounds its memory: the least recently used buckets are dropped", () => {
    const limiter = new RateLimiter(1);
    expect(limiter.take("first", 0).ok).toBe(true);
    for (let i = 0; i < 10_000; i++) limiter.take(`k${i}`, 0);
    // "first" was forgotten, so it starts full again.
    expect(limiter.take("first", 0).ok).toBe(true);
  });
});
