/**
 * Reconnect delays, both with "full jitter" (a uniform draw below a cap), so that a broker restart
 * which drops every agent at once does not bring them all back in the same millisecond.
 */
export interface BackoffOptions {
  baseMs: number;
  maxMs: number;
  random?: () => number;
}

/** Exponential: the cap doubles with each failed attempt, from `baseMs` up to `maxMs`. */
export function backoffDelay(attempt: number, { baseMs, maxMs, random = Math.random }: BackoffOptions): number {
  const cap = Math.min(maxMs, baseMs * 2 ** Math.min(attempt, 30));
  return Math.floor(random() * cap);
}

/**
 * For a link that has been down `downMs`: the cap is how long it has been down, at least `baseMs`
 * and at most `maxMs`. The first try after a drop comes within `baseMs` (spread, not a herd); a
 * broker that stays away is tried less and less often, as with doubling, but never waited for
 * longer than it was gone. Doubling lets one unlucky agent draw a cap of 8 or 16 s after a
 * 3-second restart; here every agent is back within max(baseMs, downtime) of the broker's return.
 */
export function reconnectDelay(downMs: number, { baseMs, maxMs, random = Math.random }: BackoffOptions): number {
  const cap = Math.min(maxMs, Math.max(baseMs, downMs));
  return Math.floor(random() * cap);
}

/** The agent's control link (and the bench's simulated agents): the first try within 2 s of a drop. */
export const CONTROL_RECONNECT: BackoffOptions = { baseMs: 2_000, maxMs: 30_000 };

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
