/**
 * How a unit's command ended, as the agent reports it, and the exit file its supervisor
 * (supervise.js) writes in the spool so that the status outlives an agent that dies first.
 */
import { readFile } from "node:fs/promises";
import { constants } from "node:os";
import { join } from "node:path";
import { z } from "zod";
import type { ExitRecord } from "./supervise.js";

export interface Exit {
  exitCode: number | null;
  signal: string | null;
  /** Set when the outcome is not the command's own: it could not start, or an agent restart lost it. */
  error: string | null;
}

export const EXIT_FILE = "exit";

/** The outcome of a process that ended while no agent watched and left no exit file. */
export const NO_EXIT_STATUS = "agent restarted; the unit's process ended without recording its exit status";

const Signal = z.custom<NodeJS.Signals>(
  (value) => typeof value === "string" && Object.hasOwn(constants.signals, value),
);

/** The exit file supervise.js writes: how the command ended, or why it never started. */
const ExitFile = z
  .union([
    z.strictObject({ code: z.number().int().min(0).max(255), signal: z.null() }),
    z.strictObject({ code: z.null(), signal: Signal }),
    z.strictObject({ code: z.null(), signal: z.null(), error: z.string().min(1) }),
  ])
  .transform(
    (exit): Exit => ({ exitCode: exit.code, signal: exit.signal, error: "error" in exit ? exit.error : null }),
  ) satisfies z.ZodType<Exit, ExitRecord>;

/** Anything but what supervise.js writes (a torn write, a file from an older agent) is no status. */
export function parseExitFile(text: string): Exit | null {
  try {
    return toExit(JSON.parse(text));
  } catch {
    return null;
  }
}

/** An exit record as supervise.js writes it and answers it, or null. */
export function toExit(record: unknown): Exit | null {
  const parsed = ExitFile.safeParse(record);
  return parsed.success ? parsed.data : null;
}

export async function readExitFile(dir: string): Promise<Exit | null> {
  return readFile(join(dir, EXIT_FILE), "utf8").then(parseExitFile, () => null);
}
