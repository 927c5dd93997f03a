/**
 * Repeated runs of one bench item, summarised: a figure from a single run says little on a shared
 * 2-core machine, so each item runs several times and its row gives the median run's text beside the
 * median and spread (min–max) of its headline figure. Every run's raw data stays in the JSON.
 */
import type { Row } from "./report.js";
import { median, round } from "./stats.js";

export interface Attempt {
  rows: Row[];
  /** Set when the run threw: the others still count. */
  error?: string;
}

/** Rows of one item over its runs, matched by position (an item always returns its rows in one order). */
export function summarise(attempts: Attempt[]): Row[] {
  const ok = attempts.filter((a) => !a.error);
  const failures = attempts.filter((a) => a.error).map((a) => a.error!);
  if (ok.length === 0) return [];
  const width = Math.max(...ok.map((a) => a.rows.length));
  const out: Row[] = [];
  for (let i = 0; i < width; i++) {
    const runs = ok.map((a) => a.rows[i]).filter((r): r is Row => r !== undefined);
    out.push(combine(runs, failures));
  }
  return out;
}

function combine(runs: Row[], failures: string[]): Row {
  const failedNote = failures.length ? `; ${failures.length} run(s) failed: ${failures[0]}` : "";
  const values = runs.map((r) => r.headline?.value).filter((v): v is number => v !== undefined && Number.isFinite(v));
  // The run whose headline is the median speaks for the item (its text, its goal verdict).
  const middle = values.length === runs.length && values.length > 0 ? pickMedianRun(runs) : runs[0]!;
  if (runs.length === 1 || values.length !== runs.length)
    return { ...middle, result: middle.result + failedNote, data: { runs: runs.map((r) => r.data) } };
  const unit = middle.headline!.unit;
  const spread = `median ${round(median(values), 2)} ${unit} (min ${round(Math.min(...values), 2)}, max ${round(Math.max(...values), 2)}; ${runs.length} runs)`;
  return {
    ...middle,
    measure: middle.measure,
    result: `${spread}. Median run: ${middle.result}${failedNote}`,
    met: middle.met,
    data: { samples: values, unit, runs: runs.map((r) => r.data) },
  };
}

function pickMedianRun(runs: Row[]): Row {
  const sorted = [...runs].sort((a, b) => a.headline!.value - b.headline!.value);
  // Lower median for even counts: a real run, not an interpolation.
  return sorted[Math.ceil(sorted.length / 2) - 1]!;
}
