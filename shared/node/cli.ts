/** Helpers both CLIs share: the package version and recognising argument errors. */
import { readFileSync } from "node:fs";

/** Read from the package.json beside the built code (dist/shared/node/ → ../../../package.json). */
export function packageVersion(): string {
  const url = new URL("../../../package.json", import.meta.url);
  return (JSON.parse(readFileSync(url, "utf8")) as { version: string }).version;
}

/** node:util parseArgs reports unknown or malformed options with ERR_PARSE_ARGS_* codes. */
export function isUsageError(error: unknown): error is Error {
  return error instanceof Error && "code" in error && typeof error.code === "string" && error.code.startsWith("ERR_PARSE_ARGS");
}
