/**
 * serve's log: one JSON object a line on stdout, whatever wrote it. workerd's structured lines
 * ({timestamp, level, message, ...}) and the broker's own (broker/log.ts: a JSON object as the
 * message of console.log) become {time, level, source, ...}; anything else is kept as `message`.
 */
export type LogRecord = { time: string; level: string; source: string } & Record<string, unknown>;

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function parseObject(text: string): Record<string, unknown> | undefined {
  if (!text.startsWith("{")) return undefined;
  try {
    const value: unknown = JSON.parse(text);
    return isObject(value) ? value : undefined;
  } catch {
    return undefined;
  }
}

/** One line workerd wrote (on `stream`), as serve logs it; `now` for lines without a time. */
export function workerdLine(line: string, stream: "stdout" | "stderr", now: Date): LogRecord | undefined {
  const trimmed = line.trim();
  if (trimmed === "") return undefined;
  const outer = parseObject(trimmed);
  if (!outer)
    return {
      time: now.toISOString(),
      level: stream === "stderr" ? "error" : "info",
      source: "workerd",
      message: trimmed,
    };
  // workerd's own `source` is a file of its code: kept as `origin`, since `source` says who logged.
  const { timestamp, level, message, source: origin, ...rest } = outer;
  const millis = typeof timestamp === "string" || typeof timestamp === "number" ? Number(timestamp) : Number.NaN;
  const time = Number.isFinite(millis) ? new Date(millis).toISOString() : now.toISOString();
  const inner = typeof message === "string" ? parseObject(message) : undefined;
  // console.log is level "log" in workerd's lines; console.error "error".
  const normalized = level === "log" || level === undefined ? "info" : String(level);
  if (inner) return { ...inner, time, level: normalized, source: "broker" };
  return {
    ...rest,
    time,
    level: normalized,
    source: "workerd",
    ...(origin === undefined ? {} : { origin }),
    ...(message === undefined ? {} : { message }),
  };
}

export function serveLine(
  level: "info" | "warn" | "error",
  event: string,
  fields: Record<string, unknown> = {},
  now = new Date(),
): LogRecord {
  return { time: now.toISOString(), level, source: "serve", event, ...fields };
}
