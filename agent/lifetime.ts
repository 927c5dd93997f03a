/**
 * One-shot and ephemeral agents (autoscaled or CI-like hosts): `--max-units N` leaves after taking
 * N units, `--idle-exit DURATION` after that long without a unit, `--max-uptime DURATION` after
 * running that long. Leaving means: tell the broker (`leave`: it assigns nothing more and shows the
 * node as left, not lost), finish the units held, close, exit 0. The policy is the pure function
 * leaveReason; LifetimeWatch keeps one run's account and asks it after each assignment and once a
 * second.
 */

export interface LifetimeLimits {
  maxUnits: number | null;
  idleExitMs: number | null;
  maxUptimeMs: number | null;
}

export interface LifetimeState {
  startedAt: number;
  now: number;
  /** Units this run of the agent was assigned (not those taken up from the spool). */
  taken: number;
  /** Units running or waiting for a slot. */
  held: number;
  /** When `held` last dropped to 0 (or the agent started). */
  idleSince: number;
}

export const NO_LIMITS: LifetimeLimits = { maxUnits: null, idleExitMs: null, maxUptimeMs: null };

/** Why the agent should leave now, or null to stay. */
export function leaveReason(limits: LifetimeLimits, state: LifetimeState): string | null {
  if (limits.maxUnits !== null && state.taken >= limits.maxUnits)
    return `took its ${limits.maxUnits} unit${limits.maxUnits === 1 ? "" : "s"} (--max-units)`;
  if (limits.maxUptimeMs !== null && state.now - state.startedAt >= limits.maxUptimeMs)
    return `ran for ${Math.round(limits.maxUptimeMs / 1000)} s (--max-uptime)`;
  if (limits.idleExitMs !== null && state.held === 0 && state.now - state.idleSince >= limits.idleExitMs) {
    return `idle for ${Math.round(limits.idleExitMs / 1000)} s (--idle-exit)`;
  }
  return null;
}

export const hasLimits = (limits: LifetimeLimits) =>
  limits.maxUnits !== null || limits.idleExitMs !== null || limits.maxUptimeMs !== null;

/** One run's account against its limits, and why it leaves once one is reached. */
export class LifetimeWatch {
  /** Set once a limit is reached: the agent then takes nothing more. */
  leaving: string | null = null;
  private readonly startedAt = Date.now();
  private taken = 0;
  private idleSince = Date.now();
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;

  constructor(
    private readonly limits: LifetimeLimits,
    /** Units running or waiting for a slot. */
    private readonly held: () => number,
    /** Carries the leaving out (tell the broker, stop once nothing is held); called once. */
    private readonly leave: (reason: string) => void,
  ) {}

  /** The once-a-second check, only when a limit is set. */
  start(): void {
    if (!hasLimits(this.limits)) return;
    this.idleSince = Date.now();
    this.timer = setInterval(() => this.check(), 1_000);
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
  }

  /** An assignment of this run (one taken up from the spool is not counted against --max-units). */
  took(): void {
    this.taken += 1;
  }

  /** The agent holds nothing now: --idle-exit counts from here. */
  idle(): void {
    this.idleSince = Date.now();
  }

  check(): void {
    if (this.leaving || this.stopped) return;
    const state = {
      startedAt: this.startedAt,
      now: Date.now(),
      taken: this.taken,
      held: this.held(),
      idleSince: this.idleSince,
    };
    const reason = leaveReason(this.limits, state);
    if (!reason) return;
    this.leaving = reason;
    this.leave(reason);
  }
}
