/** Order statistics for the bench figures. */
export function percentile(values: number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  // Nearest rank: p99 of 200 samples is the 198th, an observed value rather than an interpolation.
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1]!;
}

export const median = (values: number[]) => percentile(values, 50);

export const round = (value: number, digits = 1) => Math.round(value * 10 ** digits) / 10 ** digits;

/**
 * How fast events came, from their times (ms): the most in any `windowMs` window (peak, per second)
 * and the mean rate from the first to the last.
 */
export function arrivalRate(times: number[], windowMs = 1000): { peakPerSecond: number; meanPerSecond: number } {
  if (times.length === 0) return { peakPerSecond: 0, meanPerSecond: 0 };
  const sorted = [...times].sort((a, b) => a - b);
  let peak = 0;
  let start = 0;
  for (let end = 0; end < sorted.length; end++) {
    while (sorted[end]! - sorted[start]! >= windowMs) start++;
    peak = Math.max(peak, end - start + 1);
  }
  const span = sorted[sorted.length - 1]! - sorted[0]!;
  return {
    peakPerSecond: (peak * 1000) / windowMs,
    meanPerSecond: span > 0 ? ((sorted.length - 1) * 1000) / span : sorted.length,
  };
}
