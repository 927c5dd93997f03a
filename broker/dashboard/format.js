// @ts-check
/** Durations and ages as people read them: "850ms", "42s", "3m 05s", "2h 07m", "3d 4h". */

/** @param {number} n */
const pad = (n) => String(n).padStart(2, "0");

/**
 * @param {number} ms
 * @returns {string}
 */
export function formatDuration(ms) {
  if (!Number.isFinite(ms) || ms < 0) return "–";
  if (ms < 1000) return `${Math.floor(ms)}ms`;
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${pad(s % 60)}s`;
  const h = Math.floor(m / 60);
  if (h < 24) return `${h}h ${pad(m % 60)}m`;
  return `${Math.floor(h / 24)}d ${h % 24}h`;
}

/**
 * How long ago `iso` was: "just now", "5s ago"; "–" for null or an unreadable time.
 * @param {string | null | undefined} iso
 * @param {number} now  ms since the epoch
 */
export function formatAge(iso, now) {
  const then = iso ? Date.parse(iso) : Number.NaN;
  if (Number.isNaN(then)) return "–";
  return now - then < 1000 ? "just now" : `${formatDuration(now - then)} ago`;
}

export const FINAL_STATES = new Set(["Succeeded", "Failed", "Canceled", "Released"]);

/**
 * How long a unit ran (or has been running): from its start, or its creation when the start is not
 * known, to its end, or its last update once final, or now. Null when it has not started.
 * @param {{ state: string, createdAt: string, updatedAt?: string, startedAt?: string | null, finishedAt?: string | null }} unit
 * @param {number} now
 * @returns {number | null}
 */
export function unitDurationMs(unit, now) {
  if (unit.state === "Pending" || (unit.startedAt === null && unit.finishedAt == null)) return null;
  const start = Date.parse(unit.startedAt ?? unit.createdAt);
  const endIso = unit.finishedAt ?? (FINAL_STATES.has(unit.state) ? unit.updatedAt : undefined);
  const end = endIso ? Date.parse(endIso) : now;
  return Number.isNaN(start) || Number.isNaN(end) ? null : Math.max(0, end - start);
}
