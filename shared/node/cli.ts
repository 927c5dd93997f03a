/**
 * What both CLIs share: the package version, argument helpers, and one error base. Every error a
 * CLI reports on purpose is a CliError with a stable `code` and the exit status it ends with (as
 * undici's errors carry `UND_ERR_*`), so each CLI's last handler is one call to `cliFailure`.
 */
import { readFileSync } from "node:fs";

/** Read from the package.json beside the built code (dist/shared/node/ → ../../../package.json). */
export function packageVersion(): string {
  const url = new URL("../../../package.json", import.meta.url);
  return (JSON.parse(readFileSync(url, "utf8")) as { version: string }).version;
}

/** Exit statuses: 1 the operation failed, 2 the command line (or a file it names) is wrong. */
export const EXIT_FAILED = 1;
export const EXIT_USAGE = 2;

export class CliError extends Error {
  override name = "CliError";
  constructor(
    readonly code: string,
    message: string,
    readonly exitCode: number = EXIT_FAILED,
  ) {
    super(message);
  }

  /** The line after the program's name; a subclass may prefix its code. */
  describe(): string {
    return this.message;
  }
}

/** A wrong option or value: the CLI adds a pointer to --help. */
export class UsageError extends CliError {
  override name = "UsageError";
  constructor(message: string) {
    super("MESH_ERR_USAGE", message, EXIT_USAGE);
  }
}

export const usage = (message: string): never => {
  throw new UsageError(message);
};

/** node:util parseArgs reports unknown or malformed options with ERR_PARSE_ARGS_* codes. */
function isParseArgsError(error: unknown): error is Error {
  return (
    error instanceof Error &&
    "code" in error &&
    typeof error.code === "string" &&
    error.code.startsWith("ERR_PARSE_ARGS")
  );
}

/**
 * What a CLI prints (to stderr) and exits with for an error its main threw. Anything not a
 * CliError is a bug or an unforeseen fault: `unexpected` says how much of it to print.
 */
export function cliFailure(
  program: string,
  error: unknown,
  unexpected: "message" | "stack" = "message",
): { lines: string[]; exitCode: number } {
  if (isParseArgsError(error)) return cliFailure(program, new UsageError(error.message));
  if (error instanceof CliError) {
    const lines = [`${program}: ${error.describe()}`];
    if (error.exitCode === EXIT_USAGE) lines.push(`Try '${program} --help'.`);
    return { lines, exitCode: error.exitCode };
  }
  const text =
    error instanceof Error ? ((unexpected === "stack" ? error.stack : undefined) ?? error.message) : String(error);
  return { lines: [`${program}: ${text}`], exitCode: EXIT_FAILED };
}

/** `key=value` items (repeated --tag, -a) as a record; `option` names the flag in the error. */
export function keyValues(option: string, items: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const item of items) {
    const eq = item.indexOf("=");
    if (eq <= 0) usage(`${option} takes key=value, got "${item}"`);
    out[item.slice(0, eq)] = item.slice(eq + 1);
  }
  return out;
}
