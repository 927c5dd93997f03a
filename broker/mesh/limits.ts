/**
 * Submit rate per token: a token bucket per submitter, refilled continuously. Kept in memory: an
 * evicted Mesh object starts with full buckets, which only ever errs toward letting a burst in.
 * The number of buckets is bounded so that many distinct tokens cannot grow memory without limit.
 */
export interface RateDecision {
  ok: boolean;
  /** When refused: how long until one submit is allowed again. */
  retryAfterMs: number;
}

const MAX_BUCKETS = 10_000;

export class RateLimiter {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();

  constructor(private readonly perMinute: number) {}

  take(key: string, now: number): RateDecision {
    const refillPerMs = this.perMinute / 60_000;
    const bucket = this.buckets.get(key) ?? { tokens: this.perMinute, at: now };
    bucket.tokens = Math.min(this.perMinute, bucket.tokens + Math.max(0, now - bucket.at) * refillPerMs);
    bucket.at = now;
    // Re-inserted so that Map order is least recently used first.
    this.buckets.delete(key);
    this.buckets.set(key, bucket);
    if (this.buckets.size > MAX_BUCKETS) this.buckets.delete(this.buckets.keys().next().value!);
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return { ok: true, retryAfterMs: 0 };
    }
    return { ok: false, retryAfterMs: Math.ceil((1 - bucket.tokens) / refillPerMs) };
  }
}
