/**
 * Durations as receptorctl takes them (`--ttl 1h20m30s`, `30m10s`), plus plain seconds and `ms`.
 * Parsed once here so the broker, meshctl and the agent agree on what "30s" means.
 */
import { type Result, fail, ok } from "./errors.js";

const UNIT_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;
const PART = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/gy;
/** Longer than any job should wait or be kept: keeps arithmetic on dates far from overflow. */
const MAX_MS = 366 * UNIT_MS.d;

export function parseDuration(text: string): Result<number> {
  const invalid = () =>
    fail<number>("bad_request", `bad duration ${JSON.stringify(text)}: use e.g. 90, 90s, 1h20m30s or 500ms`);
  if (/^\d{1,12}$/.test(text)) return checked(Number(text) * 1000, text);
  if (text === "") return invalid();
  PART.lastIndex = 0;
  let total = 0;
  let consumed = 0;
  for (let match = PART.exec(text); match; match = PART.exec(text)) {
    total += Number(match[1]) * UNIT_MS[match[2] as keyof typeof UNIT_MS];
    consumed = PART.lastIndex;
  }
  if (consumed !== text.length) return invalid();
  return checked(Math.round(total), text);
}

function checked(ms: number, text: string): Result<number> {
  if (ms <= 0) return fail("bad_request", `duration ${JSON.stringify(text)} must be positive`);
  if (ms > MAX_MS) return fail("bad_request", `duration ${JSON.stringify(text)} is longer than 366 days`);
  return ok(ms);
}

/** "1h20m30s"-style text for a duration in ms, for details and logs. */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${ms}ms`;
  let rest = Math.round(ms / 1000);
  const parts: string[] = [];
  for (const [unit, size] of [
    ["d", 86_400],
    ["h", 3_600],
    ["m", 60],
  ] as const) {
    if (rest >= size) {
      parts.push(`${Math.floor(rest / size)}${unit}`);
      rest %= size;
    }
  }
  if (rest > 0 || parts.length === 0) parts.push(`${rest}s`);
  return parts.join("");
}
