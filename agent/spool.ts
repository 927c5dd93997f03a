/**
 * What a unit leaves in its spool directory (workDir/units/<unitId>/) so that a restarted agent can
 * carry on where the last one stopped:
 *  - unit.json  this agent's record: the work command, how far the unit got, which process runs it;
 *  - payload    stdin, as downloaded;
 *  - stdout     results (stdout and stderr), appended by the process itself;
 *  - exit       how the command ended (JSON), written by its supervisor even when no agent is alive;
 *  - work/      the command's working directory, so that what it writes there cannot replace the above.
 * On start the agent scans the spool and decides per unit (decideRecovery) what to do with it.
 */
import { open, readFile, readdir, rename } from "node:fs/promises";
import { constants } from "node:os";
import { join } from "node:path";
import { z } from "zod";
import { UNIT_ID_PATTERN } from "../shared/ids.js";
import type { UnitState } from "../shared/states.js";
import { WorkCommand } from "./config.js";
import type { Exit } from "./process.js";
import type { ExitRecord } from "./supervise.js";

export const RECORD_FILE = "unit.json";
export const EXIT_FILE = "exit";
export const WORK_DIR = "work";

export const PROCESS_GONE = "agent restarted; the unit's process was gone";
export const START_UNRECORDED = "agent restarted while starting the unit's process";
export const NO_EXIT_STATUS = "agent restarted; the unit's process ended without recording its exit status";

/** A process as this boot of this host knows it: a PID alone may name another process later. */
const ProcessIdentity = z.object({
  pid: z.number().int().positive(),
  /** Field 22 of /proc/<pid>/stat (clock ticks after boot); null where /proc is unavailable. */
  startTime: z.number().int().nonnegative().nullable(),
  bootId: z.string().nullable(),
});
export type ProcessIdentity = z.infer<typeof ProcessIdentity>;

const UnitRecord = z.object({
  unitId: z.string().regex(UNIT_ID_PATTERN),
  work: WorkCommand,
  /** assigned: payload not yet complete; starting: the spawn may have happened; started: `process` runs it. */
  phase: z.enum(["assigned", "starting", "started"]),
  process: ProcessIdentity.nullable(),
  assignedAt: z.string(),
  startedAt: z.string().nullable(),
});
export type UnitRecord = z.infer<typeof UnitRecord>;

export type Recovery =
  | { action: "drop"; reason: string }
  /** Never started: run it as a fresh assignment. */
  | { action: "rerun"; work: WorkCommand }
  /** Ended (or lost): send the remaining results, then this outcome. */
  | { action: "report"; work: WorkCommand; exit: Exit }
  /** Still running: follow its results and wait for it to end. */
  | { action: "adopt"; work: WorkCommand; process: ProcessIdentity };

export function newRecord(unitId: string, work: WorkCommand): UnitRecord {
  return { unitId, work, phase: "assigned", process: null, assignedAt: new Date().toISOString(), startedAt: null };
}

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

const Signal = z.custom<NodeJS.Signals>((value) => typeof value === "string" && Object.hasOwn(constants.signals, value));

/** The exit file supervise.js writes: how the command ended, or why it never started. */
const ExitFile = z
  .union([
    z.strictObject({ code: z.number().int().min(0).max(255), signal: z.null() }),
    z.strictObject({ code: z.null(), signal: Signal }),
    z.strictObject({ code: z.null(), signal: z.null(), error: z.string().min(1) }),
  ])
  .transform((exit): Exit => ({ exitCode: exit.code, signal: exit.signal, error: "error" in exit ? exit.error : null })) satisfies z.ZodType<Exit, ExitRecord>;

/** Anything but what supervise.js writes (a torn write, a file from an older agent) is no status. */
export function parseExitFile(text: string): Exit | null {
  try {
    const parsed = ExitFile.safeParse(JSON.parse(text));
    return parsed.success ? parsed.data : null;
  } catch {
    return null;
  }
}

/** What to do with a spooled unit found at start; `running` says whether record.process still runs. */
export function decideRecovery(record: UnitRecord | null, exit: Exit | null, running: boolean): Recovery {
  if (!record) return { action: "drop", reason: `no readable ${RECORD_FILE}` };
  const { work } = record;
  if (exit) return { action: "report", work, exit };
  const lost = (detail: string): Recovery => ({ action: "report", work, exit: { exitCode: null, signal: null, error: detail } });
  switch (record.phase) {
    case "assigned":
      return { action: "rerun", work };
    case "starting":
      return lost(START_UNRECORDED);
    case "started":
      return running && record.process ? { action: "adopt", work, process: record.process } : lost(PROCESS_GONE);
  }
}

/**
 * Whether the agent may drop a unit's spool now that the broker says the unit is final. Only if
 * nothing in it can still matter: the unit was released, or the broker holds its exit (and so,
 * by the `finished` handshake, every byte), or the command never ran here. Otherwise the agent
 * stops the command if it still runs and reports what is left: the broker keeps it as a late exit.
 */
export function decideOnClosed(state: UnitState, exitRecorded: boolean, ran: boolean): "drop" | "report" {
  return state === "Released" || exitRecorded || !ran ? "drop" : "report";
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

export async function readExitFile(dir: string): Promise<Exit | null> {
  return readFile(join(dir, EXIT_FILE), "utf8").then(parseExitFile, () => null);
}

async function readRecord(dir: string, unitId: string): Promise<UnitRecord | null> {
  try {
    const parsed = UnitRecord.safeParse(JSON.parse(await readFile(join(dir, RECORD_FILE), "utf8")));
    return parsed.success && parsed.data.unitId === unitId ? parsed.data : null;
  } catch {
    return null;
  }
}

/** Replaces unit.json atomically and durably: a crash or power loss leaves the old or the new record. */
export async function writeRecord(dir: string, record: UnitRecord): Promise<void> {
  const path = join(dir, RECORD_FILE);
  const file = await open(`${path}.tmp`, "w", 0o600);
  try {
    await file.writeFile(JSON.stringify(record));
    await file.datasync();
  } finally {
    await file.close();
  }
  await rename(`${path}.tmp`, path);
  const directory = await open(dir, "r");
  try {
    await directory.sync();
  } finally {
    await directory.close();
  }
}

export interface SpooledUnit {
  unitId: string;
  dir: string;
  recovery: Recovery;
}

/** Every unit directory under `unitsDir` and what to do with it. */
export async function scanSpool(unitsDir: string): Promise<SpooledUnit[]> {
  const names = await readdir(unitsDir).catch(() => [] as string[]);
  const found: SpooledUnit[] = [];
  for (const unitId of names.filter((name) => UNIT_ID_PATTERN.test(name))) {
    const dir = join(unitsDir, unitId);
    const record = await readRecord(dir, unitId);
    const running = record?.process ? await isRunning(record.process) : false;
    found.push({ unitId, dir, recovery: decideRecovery(record, await readExitFile(dir), running) });
  }
  return found;
}
