import { describe, expect, it } from "vitest";
import { CLOUDFLARE, seeded, simulate } from "../../scripts/sim/shards.js";

describe("reconnect storm model", () => {
  it("one object admits hellos one at a time: 1,000 agents at 5 ms take 5 s, not the 2 s of their spread", () => {
    const o = simulate({ ...CLOUDFLARE, agents: 1_000, shards: 1 }, seeded(1));
    expect(o.admitted).toBe(1_000);
    expect(o.refusals).toBe(0);
    expect(o.allBackMs).toBeGreaterThanOrEqual(1_000 * 5);
    expect(o.allBackMs).toBeLessThan(1_000 * 5 + 2_000);
  });

  it("no more sockets than an object holds: agents beyond the cap never fit", () => {
    const o = simulate({ ...CLOUDFLARE, helloMs: 0.01, agents: 120, shards: 1, maxSockets: 100 }, seeded(2));
    expect(o.admitted).toBe(100);
    expect(Number.isNaN(o.allBackMs)).toBe(true);
  });

  it("a full queue refuses and the agent comes back later, so everyone still gets in", () => {
    const o = simulate({ ...CLOUDFLARE, agents: 2_000, shards: 1, maxQueue: 50 }, seeded(3));
    expect(o.refusals).toBeGreaterThan(0);
    expect(o.admitted).toBe(2_000);
  });

  it("sharding the sockets divides the storm while the Mesh object only takes batches", () => {
    const one = simulate({ ...CLOUDFLARE, agents: 10_000, shards: 1 }, seeded(4));
    const sixteen = simulate({ ...CLOUDFLARE, agents: 10_000, shards: 16 }, seeded(4));
    expect(sixteen.allBackMs).toBeLessThan(one.allBackMs / 5);
    expect(sixteen.meshBusiestSecondMs).toBeLessThan(1_000);
  });

  it("is reproducible: the same seed gives the same run", () => {
    const m = { ...CLOUDFLARE, agents: 3_000, shards: 4 };
    expect(simulate(m, seeded(9))).toEqual(simulate(m, seeded(9)));
  });
});
