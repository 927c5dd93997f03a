/**
 * Masking what readers without the submit permission may not see: ansible-runner's `starting`
 * line (and the artifacts' `command` file) carry the worker's whole process environment.
 */

export const REDACTED = "********";

/** The variable names stay (they help debugging); their values do not. */
export function redactEnv(line: Record<string, unknown>): Record<string, unknown> {
  const env = line.env;
  if (env === null || typeof env !== "object") return line;
  return { ...line, env: Object.fromEntries(Object.keys(env).map((k) => [k, REDACTED])) };
}
