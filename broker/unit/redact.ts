/**
 * Masking secrets. For readers without the submit permission: ansible-runner's `starting` line (and
 * the artifacts' `command` file) carry the worker's whole process environment. For everyone:
 * `secret_*` params, which only the node running the unit gets.
 */

export const REDACTED = "********";

/** The variable names stay (they help debugging); their values do not. */
export function redactEnv(line: Record<string, unknown>): Record<string, unknown> {
  const env = line.env;
  if (env === null || typeof env !== "object") return line;
  return { ...line, env: Object.fromEntries(Object.keys(env).map((k) => [k, REDACTED])) };
}

/** receptor's convention: a param named `secret_…` (any case: receptor lowercases before it compares) is for the node only. */
export function redactParams(params: Readonly<Record<string, string>>): Record<string, string> {
  return Object.fromEntries(
    Object.entries(params).map(([k, v]) => [k, k.toLowerCase().startsWith("secret_") ? REDACTED : v]),
  );
}
