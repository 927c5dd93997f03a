/** The bench's output: one markdown table (and the same rows as JSON) with the machine it ran on. */
import { cpus, loadavg, totalmem } from "node:os";

export interface Row {
  /** The item number. */
  item: number;
  measure: string;
  result: string;
  /** What the figure is compared with, measured in the same run. */
  comparedWith: string;
  goal: string;
  /** null where the row has no goal, or could not be measured. */
  met: boolean | null;
  /** The raw figures behind the row, for the JSON file. */
  data?: Record<string, unknown>;
  /** The one figure repeated runs are summarised by (median and spread), with its unit. */
  headline?: { value: number; unit: string };
}

export interface Machine {
  cores: number;
  cpu: string;
  memoryGiB: number;
  node: string;
  loadAverage1m: number;
}

export function machine(): Machine {
  return {
    cores: cpus().length,
    cpu: cpus()[0]?.model.trim() ?? "unknown",
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    node: process.version,
    loadAverage1m: Math.round(loadavg()[0]! * 100) / 100,
  };
}

export function markdown(m: Machine, rows: Row[], startedAt: string): string {
  const mark = (met: boolean | null) => (met === null ? "—" : met ? "yes" : "**no**");
  const cell = (text: string) => text.replace(/\|/g, "\\|");
  return [
    `Machine: ${m.cores} cores (${m.cpu}), ${m.memoryGiB} GiB, Node ${m.node}; load average ${m.loadAverage1m} at start (${startedAt}). ` +
      "Shared machine: other processes may have run alongside, which is why comparisons are ratios measured in the same run.",
    "",
    "| # | measure | result | compared with | goal | met |",
    "|---|---|---|---|---|---|",
    ...rows.map(
      (r) =>
        `| ${r.item} | ${cell(r.measure)} | ${cell(r.result)} | ${cell(r.comparedWith)} | ${cell(r.goal)} | ${mark(r.met)} |`,
    ),
  ].join("\n");
}
