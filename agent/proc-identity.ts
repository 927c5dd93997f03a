/**
 * Which process a PID names: a PID alone may name another process later (after the first one ended,
 * or after a reboot), so the spool records the process's start time and the boot id with it.
 */
import { readFile } from "node:fs/promises";
import { z } from "zod";

/** A process as this boot of this host knows it. */
export const ProcessIdentity = z.object({
  pid: z.number().int().positive(),
  /** Field 22 of /proc/<pid>/stat (clock ticks after boot); null where /proc is unavailable. */
  startTime: z.number().int().nonnegative().nullable(),
  bootId: z.string().nullable(),
});
export type ProcessIdentity = z.infer<typeof ProcessIdentity>;

/** Fields of /proc/<pid>/stat that tell whether the process is still the one we started. */
export interface ProcStat {
  state: string;
  startTime: number | null;
}

export function parseProcStat(text: string): ProcStat | null {
  // Field 2 is the command name in parentheses and may itself contain spaces and parentheses.
  const close = text.lastIndexOf(")");
  if (close < 0) return null;
  const fields = text.slice(close + 2).split(" ");
  const state = fields[0];
  const startTime = Number(fields[19]);
  if (!state || fields[19] === undefined || !Number.isSafeInteger(startTime)) return null;
  return { state, startTime };
}

/** Whether `stat` (read now, null if there is no such PID) is the process `recorded` names. */
export function isSameProcess(recorded: ProcessIdentity, bootId: string | null, stat: ProcStat | null): boolean {
  if (!stat || stat.state === "Z" || stat.state === "X") return false;
  if (recorded.bootId !== null && bootId !== null && recorded.bootId !== bootId) return false;
  return recorded.startTime === null || stat.startTime === recorded.startTime;
}

const HAS_PROC = readFile("/proc/self/stat", "utf8").then(
  () => true,
  () => false,
);

export async function readProcStat(pid: number): Promise<ProcStat | null> {
  try {
    return parseProcStat(await readFile(`/proc/${pid}/stat`, "utf8"));
  } catch {
    if (await HAS_PROC) return null;
  }
  // No /proc (not Linux): existence is all we can learn.
  try {
    process.kill(pid, 0);
    return { state: "?", startTime: null };
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM" ? { state: "?", startTime: null } : null;
  }
}

export async function currentBootId(): Promise<string | null> {
  return readFile("/proc/sys/kernel/random/boot_id", "utf8").then(
    (text) => text.trim() || null,
    () => null,
  );
}

export async function identifyProcess(pid: number): Promise<ProcessIdentity> {
  const [stat, bootId] = await Promise.all([readProcStat(pid), currentBootId()]);
  return { pid, startTime: stat?.startTime ?? null, bootId };
}

export async function isRunning(identity: ProcessIdentity): Promise<boolean> {
  const [stat, bootId] = await Promise.all([readProcStat(identity.pid), currentBootId()]);
  return isSameProcess(identity, bootId, stat);
}
