import { describe, expect, it } from "vitest";
import { type LifetimeLimits, NO_LIMITS, hasLimits, leaveReason } from "../../agent/lifetime.js";
import { type HealthCheck, MAX_SKEW_MS, healthFailure, judgeHealth, probeAgentTime } from "../../shared/health.js";

const limits = (l: Partial<LifetimeLimits>): LifetimeLimits => ({ ...NO_LIMITS, ...l });
const state = { startedAt: 0, now: 0, taken: 0, held: 0, idleSince: 0 };

describe("leaveReason", () => {
  it.each([
    ["no limits", NO_LIMITS, { now: 1e9, taken: 99 }, null],
    ["--max-units not reached", limits({ maxUnits: 2 }), { taken: 1, held: 1 }, null],
    [
      "--max-units reached, even while it runs",
      limits({ maxUnits: 1 }),
      { taken: 1, held: 1 },
      /took its 1 unit \(--max-units\)/,
    ],
    ["--max-uptime reached", limits({ maxUptimeMs: 60_000 }), { now: 60_000, held: 3 }, /ran for 60 s/],
    ["--max-uptime not reached", limits({ maxUptimeMs: 60_000 }), { now: 59_999 }, null],
    ["--idle-exit while holding a unit", limits({ idleExitMs: 1000 }), { now: 5000, held: 1 }, null],
    [
      "--idle-exit after idling long enough",
      limits({ idleExitMs: 1000 }),
      { now: 5000, idleSince: 4000 },
      /idle for 1 s/,
    ],
    ["--idle-exit not yet", limits({ idleExitMs: 1000 }), { now: 4999, idleSince: 4000 }, null],
  ])("%s", (_what, l, s, expected) => {
    const reason = leaveReason(l, { ...state, ...s });
    if (expected === null) expect(reason).toBeNull();
    else expect(reason).toMatch(expected);
  });

  it("hasLimits", () => {
    expect(hasLimits(NO_LIMITS)).toBe(false);
    expect(hasLimits(limits({ idleExitMs: 1 }))).toBe(true);
  });
});

describe("judgeHealth", () => {
  const ok: HealthCheck[] = [
    { name: "ansible-runner", ok: true, detail: "ansible-runner 2.4.0" },
    { name: "disk", ok: true, detail: "9 GiB free" },
  ];
  it("measures skew at the middle of the round trip and adds the clock check", () => {
    const report = judgeHealth(ok, { sentAt: 1000, receivedAt: 1200, agentTime: 1150 });
    expect(report).toMatchObject({ ok: true, skewMs: 50, at: new Date(1200).toISOString() });
    expect(report.checks.map((c) => c.name)).toEqual(["ansible-runner", "disk", "clock"]);
    expect(healthFailure(report)).toBeNull();
  });

  it.each([
    ["a clock too far ahead", ok, MAX_SKEW_MS + 1, /^clock: skew 30001 ms/],
    ["a clock too far behind", ok, -MAX_SKEW_MS - 1, /^clock: skew -30001 ms/],
    [
      "a failed check",
      [{ name: "ansible-runner", ok: false, detail: "--version: not found on PATH" } as HealthCheck],
      0,
      /^ansible-runner: --version: not found on PATH$/,
    ],
  ])("fails on %s", (_what, checks, skew, failure) => {
    const report = judgeHealth(checks, { sentAt: 0, receivedAt: 0, agentTime: skew });
    expect(report.ok).toBe(false);
    expect(healthFailure(report)).toMatch(failure);
  });

  // Same clocks, 20 ms each way, checks taking 6 s: the agent's stamp must not read as 3 s of skew.
  it.each([
    ["same clocks", 0],
    ["an agent 40 s ahead", 40_000],
    ["an agent 5 s behind", -5_000],
  ])("measures %s whatever the checks take", (_what, skew) => {
    const sentAt = 1_000_000;
    const arrivedAt = sentAt + 20 + skew;
    const answeredAt = arrivedAt + 6_000;
    const report = judgeHealth(ok, {
      sentAt,
      receivedAt: sentAt + 20 + 6_000 + 20,
      agentTime: probeAgentTime(arrivedAt, answeredAt),
    });
    expect(report.skewMs).toBe(skew);
  });

  it("ignores a clock check the agent made up", () => {
    const report = judgeHealth([{ name: "clock", ok: true, detail: "trust me" }], {
      sentAt: 0,
      receivedAt: 0,
      agentTime: 10 * MAX_SKEW_MS,
    });
    expect(report.checks).toHaveLength(1);
    expect(report.ok).toBe(false);
  });
});
