/**
 * Riding out an unreachable broker. A follower (`work submit -f`, `work results -f`,
 * `work events -f`) keeps trying while the broker is away — a restart, a deploy, a network
 * outage — because the unit goes on running meanwhile and may still finish. It says so once per
 * outage on stderr, backs off (shared/backoff.ts), and gives up only after `retryForMs` of
 * continuous failure (`--retry-for`). Answers retrying cannot change (4xx) end it at once.
 */
import { backoffDelay, sleep } from "../shared/backoff.js";
import { formatDuration } from "../shared/duration.js";

export interface RidePolicy {
  /** How long an outage is ridden out before the follower gives up. */
  retryForMs: number;
  /** Told once when an outage starts. */
  notice: (message: string) => void;
}

/** meshctl's default `--retry-for`: longer than a broker restart or deploy, and a good part of a long network outage. */
export const DEFAULT_RETRY_FOR_MS = 15 * 60_000;

/** Whether retrying may help: the broker was not reached, or failed (5xx), or the stream broke. */
export function isRetryable(error: unknown): boolean {
  const status = (error as { status?: unknown } | null)?.status;
  return typeof status !== "number" || status === 0 || status >= 500;
}

// The first retry after a blip within 200 ms (a cut link reconnects at once), doubling to 10 s.
const BACKOFF = { baseMs: 200, maxMs: 10_000 };
/** A blip (a cut link, a reconnect that fails once) is ridden out silently; an outage is told. */
const NOTICE_AFTER_MS = 2_000;

export class Outage {
  private since: number | null = null;
  private told = false;
  private attempt = 0;

  constructor(
    private readonly policy: RidePolicy,
    private readonly now: () => number = Date.now,
    private readonly wait: (ms: number) => Promise<void> = sleep,
  ) {}

  /** The broker answered: a later failure is a new outage. */
  reached(): void {
    this.since = null;
    this.told = false;
    this.attempt = 0;
  }

  /** After a failure: rethrows it if retrying cannot help or the outage has lasted too long; else waits a backoff. */
  async failed(error: unknown): Promise<void> {
    if (!isRetryable(error)) throw error;
    const now = this.now();
    this.since ??= now;
    if (now - this.since >= this.policy.retryForMs) throw error;
    if (!this.told && now - this.since >= NOTICE_AFTER_MS) {
      this.told = true;
      const reason = error instanceof Error ? error.message : String(error);
      this.policy.notice(
        `broker unreachable (${reason}); retrying for up to ${formatDuration(this.policy.retryForMs)}`,
      );
    }
    await this.wait(Math.max(100, backoffDelay(this.attempt++, BACKOFF)));
  }
}
