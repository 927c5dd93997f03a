/**
 * A tiny writer of Prometheus' text exposition format (version 0.0.4): families of counters,
 * gauges and histograms. The client libraries (prom-client) assume Node and a process-wide
 * registry; what a mesh exposes is read from its own SQLite at scrape time, so a writer of the text
 * is all that is needed. Format: https://prometheus.io/docs/instrumenting/exposition_formats/
 */

export const CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

export type Labels = Readonly<Record<string, string>>;

export interface Sample {
  /** Appended to the family's name (`_bucket`, `_sum`, `_count` for histograms). */
  suffix?: string;
  labels?: Labels;
  value: number;
}

export interface Family {
  name: string;
  help: string;
  type: "counter" | "gauge" | "histogram";
  samples: Sample[];
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

const escapeHelp = (text: string) => text.replaceAll("\\", "\\\\").replaceAll("\n", "\\n");
const escapeValue = (text: string) => text.replaceAll("\\", "\\\\").replaceAll('"', '\\"').replaceAll("\n", "\\n");

export function formatValue(value: number): string {
  if (Number.isNaN(value)) return "NaN";
  if (value === Number.POSITIVE_INFINITY) return "+Inf";
  if (value === Number.NEGATIVE_INFINITY) return "-Inf";
  return String(value);
}

function formatLabels(labels: Labels | undefined): string {
  const entries = Object.entries(labels ?? {});
  if (entries.length === 0) return "";
  for (const [key] of entries)
    if (!LABEL.test(key) || key.startsWith("__")) throw new Error(`invalid label name ${key}`);
  return `{${entries.map(([k, v]) => `${k}="${escapeValue(v)}"`).join(",")}}`;
}

/** The exposition text of `families`, each with its HELP and TYPE lines, ending in a newline. */
export function renderExposition(families: readonly Family[]): string {
  const lines: string[] = [];
  for (const family of families) {
    if (!NAME.test(family.name)) throw new Error(`invalid metric name ${family.name}`);
    lines.push(`# HELP ${family.name} ${escapeHelp(family.help)}`, `# TYPE ${family.name} ${family.type}`);
    for (const sample of family.samples)
      lines.push(`${family.name}${sample.suffix ?? ""}${formatLabels(sample.labels)} ${formatValue(sample.value)}`);
  }
  return `${lines.join("\n")}\n`;
}

/** Index of the bucket an observation falls in: the first upper bound ≥ value; bounds.length for +Inf. */
export function bucketOf(bounds: readonly number[], value: number): number {
  const i = bounds.findIndex((bound) => value <= bound);
  return i < 0 ? bounds.length : i;
}

/**
 * A histogram's samples from per-bucket counts (not cumulative: `counts[i]` observations fell in
 * bucket i, the last one being +Inf), as the format wants them: cumulative `_bucket`s, `_sum`, `_count`.
 */
export function histogramSamples(
  bounds: readonly number[],
  counts: readonly number[],
  sum: number,
  labels: Labels = {},
): Sample[] {
  const samples: Sample[] = [];
  let running = 0;
  for (let i = 0; i <= bounds.length; i++) {
    running += counts[i] ?? 0;
    samples.push({
      suffix: "_bucket",
      labels: { ...labels, le: i < bounds.length ? formatValue(bounds[i]!) : "+Inf" },
      value: running,
    });
  }
  samples.push({ suffix: "_sum", labels, value: sum }, { suffix: "_count", labels, value: running });
  return samples;
}
