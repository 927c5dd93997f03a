/**
 * What a unit leaves in its spool directory (workDir/units/<unitId>/) so that a restarted agent can
 * carry on where the last one stopped:
 *  - unit.json  this agent's record: the work command, how far the unit got, which process runs it;
 *  - payload    stdin, as downloaded;
 *  - stdout     results (stdout and stderr), appended by the process itself;
 *  - exit       how the command ended (JSON), written by its supervisor even when no agent is alive;
 *  - work/      the command's working directory, so that what it writes there cannot replace the above.
 * On start the agent scans the spool and decides per unit (decideRecovery) what to do with it, then
 * takes the units up (takeUpSpool). The exit file's format is exit-file.ts's; telling whether a
 * recorded process still runs, proc-identity.ts's.
 */
import { closeSync, fdatasync, fsync, openSync, renameSync, writeSync } from "node:fs";
import { readFile, readdir, rm } from "node:fs/promises";
import { promisify } from "node:util";
import { join } from "node:path";
import { z } from "zod";
import { UNIT_ID_PATTERN } from "../shared/ids.js";
import type { Logger } from "../shared/node/log.js";
import type { UnitState } from "../shared/states.js";
import { WorkCommand } from "./config.js";
import { type Exit, readExitFile } from "./exit-file.js";
import { ProcessIdentity, isRunning } from "./proc-identity.js";

export const RECORD_FILE = "unit.json";
export const WORK_DIR = "work";

export const PROCESS_GONE = "agent restarted; the unit's process was gone";
export const START_UNRECORDED = "agent restarted while starting the unit's process";

const UnitRecord = z.object({
  unitId: z.string().regex(UNIT_ID_PATTERN),
  work: WorkCommand,
  /** assigned: payload not yet complete; starting: the spawn may have happened; started: `process` runs it. */
  phase: z.enum(["assigned", "starting", "started"]),
  /** The command, which leads its process group (in records of older agents: its supervisor, which led it). */
  process: ProcessIdentity.nullable(),
  /** The supervisor that records the command's exit; absent in older records. */
  supervisor: ProcessIdentity.nullable().default(null),
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
  /** Still running (or its supervisor has yet to record its end): follow its results and wait for it to end. */
  | { action: "adopt"; work: WorkCommand; process: ProcessIdentity; supervisor: ProcessIdentity | null };

export function newRecord(unitId: string, work: WorkCommand): UnitRecord {
  return {
    unitId,
    work,
    phase: "assigned",
    process: null,
    supervisor: null,
    assignedAt: new Date().toISOString(),
    startedAt: null,
  };
}

/**
 * One unit's record as its runner keeps it: each change replaces unit.json whole (writeRecord).
 *
 * Saves run one after another, and `close` waits for the one under way and makes later ones do
 * nothing: the directory is then removed. A `started` save still in its sync when a short command
 * had already ended and its unit was closed once renamed unit.json into the directory as it was
 * being removed; the removal failed (ENOTEMPTY) and took the agent down with it.
 */
export class SpoolRecord {
  private saving: Promise<void> = Promise.resolve();
  private closed = false;

  constructor(
    private readonly dir: string,
    private record: UnitRecord,
  ) {}

  /** `dir`: elsewhere than the unit's directory, one about to become it (a warm start, warm.ts). */
  save(change: Partial<UnitRecord> = {}, dir = this.dir): Promise<void> {
    this.record = { ...this.record, ...change };
    const record = this.record;
    const next = this.saving.then(() => (this.closed ? undefined : writeRecord(dir, record)));
    // The next save waits for this one whether or not it failed; the caller hears how it went.
    this.saving = next.catch(() => undefined);
    return next;
  }

  /** No more saves: resolves once none is under way any longer. */
  close(): Promise<void> {
    this.closed = true;
    return this.saving;
  }
}

/**
 * What to do with a spooled unit found at start; `running` says whether record.process still runs,
 * or its supervisor, which may not have recorded its exit yet.
 */
export function decideRecovery(record: UnitRecord | null, exit: Exit | null, running: boolean): Recovery {
  if (!record) return { action: "drop", reason: `no readable ${RECORD_FILE}` };
  const { work } = record;
  if (exit) return { action: "report", work, exit };
  const lost = (detail: string): Recovery => ({
    action: "report",
    work,
    exit: { exitCode: null, signal: null, error: detail },
  });
  switch (record.phase) {
    case "assigned":
      return { action: "rerun", work };
    case "starting":
      return lost(START_UNRECORDED);
    case "started":
      return running && record.process
        ? { action: "adopt", work, process: record.process, supervisor: record.supervisor }
        : lost(PROCESS_GONE);
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

async function readRecord(dir: string, unitId: string): Promise<UnitRecord | null> {
  try {
    const parsed = UnitRecord.safeParse(JSON.parse(await readFile(join(dir, RECORD_FILE), "utf8")));
    return parsed.success && parsed.data.unitId === unitId ? parsed.data : null;
  } catch {
    return null;
  }
}

const syncData = promisify(fdatasync);
const syncAll = promisify(fsync);

/**
 * Replaces unit.json atomically and durably: a crash or power loss leaves the old or the new record.
 * A unit's start waits for it, so only the syncs go to libuv's thread pool; the other steps take
 * microseconds and are done in place rather than each waiting its turn there (process.ts).
 *
 * The first record of a unit (an inline start's `starting`) is written in place, its file and
 * directory synced at once: there is no old record to keep whole, and a crash before both syncs
 * end leaves no record or a torn one, which a restart drops like none (the spawn waits for both).
 * One sync's wait instead of two, one after the other.
 */
export async function writeRecord(dir: string, record: UnitRecord): Promise<void> {
  const path = join(dir, RECORD_FILE);
  const text = JSON.stringify(record);
  if (await writeFirstRecord(dir, path, text)) return;
  const file = openSync(`${path}.tmp`, "w", 0o600);
  try {
    writeSync(file, text);
    await syncData(file);
  } finally {
    closeSync(file);
  }
  renameSync(`${path}.tmp`, path);
  const directory = openSync(dir, "r");
  try {
    await syncAll(directory);
  } finally {
    closeSync(directory);
  }
}

/** Writes unit.json if there is none yet (false if there is), durably, its two syncs at once. */
async function writeFirstRecord(dir: string, path: string, text: string): Promise<boolean> {
  let file: number;
  try {
    file = openSync(path, "wx", 0o600);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "EEXIST") return false;
    throw error;
  }
  const directory = openSync(dir, "r");
  try {
    writeSync(file, text);
    await Promise.all([syncData(file), syncAll(directory)]);
  } finally {
    closeSync(file);
    closeSync(directory);
  }
  return true;
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
    const running = record?.process
      ? (await isRunning(record.process)) || (record.supervisor !== null && (await isRunning(record.supervisor)))
      : false;
    found.push({ unitId, dir, recovery: decideRecovery(record, await readExitFile(dir), running) });
  }
  return found;
}

/** What taking up the spool needs of the agent (agent.ts). */
export interface SpoolTaker {
  workCommands: readonly WorkCommand[];
  log: Logger;
  /** Runs the unit again from where it stopped: reports its exit, or adopts its running process. */
  resume(unitId: string, recovery: Extract<Recovery, { action: "report" | "adopt" }>): void;
  /** Takes the unit as if it were assigned again (not counted against --max-units). */
  rerun(unitId: string, worktype: string): void;
}

/**
 * Takes up the units an earlier run of this agent left in the spool, so that hello lists them and
 * the broker does not fail them. Started units come first: they hold slots already.
 */
export async function takeUpSpool(workDir: string, taker: SpoolTaker): Promise<void> {
  const found = await scanSpool(join(workDir, "units"));
  for (const { unitId, recovery } of found) {
    const { action } = recovery;
    taker.log.info("unit:recovered", {
      unit: unitId,
      action,
      ...(action === "drop" ? { reason: recovery.reason } : { worktype: recovery.work.worktype }),
      ...(action === "report" ? recovery.exit : {}),
      ...(action === "adopt" ? { pid: recovery.process.pid } : {}),
    });
    if (recovery.action === "report" || recovery.action === "adopt") taker.resume(unitId, recovery);
  }
  for (const { unitId, dir, recovery } of found) {
    if (recovery.action === "rerun" && taker.workCommands.some((w) => w.worktype === recovery.work.worktype)) {
      taker.rerun(unitId, recovery.work.worktype);
    } else if (recovery.action === "drop" || recovery.action === "rerun") {
      // Left out of hello, a unit the broker still holds Pending is assigned again (or rejected) as usual.
      await rm(dir, { recursive: true, force: true });
    }
  }
}
