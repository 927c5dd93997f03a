/**
 * Runs one work command in its own process group: stdin from the payload file, stdout and stderr
 * into one results file (as receptor does). Cancel sends SIGINT to the whole group, then SIGKILL
 * after a grace period.
 *
 * The agent's supervisor (supervisor.ts, supervise.ts) starts the command and records its exit
 * status in the spool, so the status survives an agent that dies first.
 */
import { accessSync, closeSync, constants, openSync, statSync } from "node:fs";
import { delimiter, join, relative, resolve as resolvePath } from "node:path";
import { sleep } from "../shared/backoff.js";
import { EXIT_FILE, type Exit, NO_EXIT_STATUS, readExitFile, toExit } from "./exit-file.js";
import { type ProcessIdentity, identifyProcess, isRunning } from "./proc-identity.js";
import { WORK_DIR } from "./spool.js";
import type { Supervisor } from "./supervisor.js";

export interface RunningProcess {
  /** The command's PID, which leads its process group; null if it never ran. */
  pid: number | null;
  /** What the spool records of it (null if it never ran): the command, and the supervisor that records its exit. */
  identity: Promise<{ process: ProcessIdentity; supervisor: ProcessIdentity | null } | null>;
  exited: Promise<Exit>;
  /** SIGINT the group now, SIGKILL it (what is left of it) after `graceMs`. */
  cancel(graceMs: number): void;
}

/** The outcome of a command whose supervisor was killed before the command ended. */
export const SUPERVISOR_LOST = "the agent's supervisor was killed while the command ran; its exit status is unknown";
/** How often a process that is not our child is looked at, to learn that it ended. */
const POLL_MS = 250;

/**
 * Synchronous, as are the other small file steps of a start (spool.ts writeRecord): each is
 * microseconds on a local disk, where through libuv's thread pool each waited its turn behind
 * whatever else was queued (the spool record's syncs, a sample of the disk, a finished unit's
 * removal): a few milliseconds a step on a busy agent, most of an inline start.
 */
function isExecutableFile(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

/** Why `command` could not start; checked before spawning so that the unit's detail says it plainly. */
function cannotRun(command: string, cwd: string): string | null {
  if (command.includes("/")) return isExecutableFile(resolvePath(cwd, command)) ? null : "not an executable file";
  for (const dir of (process.env.PATH ?? "").split(delimiter).filter(Boolean)) {
    if (isExecutableFile(resolvePath(cwd, dir, command))) return null;
  }
  return "not found on PATH";
}

/**
 * `signalGroup(signal, afterEnd)` says whether the signal was sent; `afterEnd` sends it even once
 * the command has ended. Once the SIGINT reached the group, the SIGKILL follows at the grace whether
 * or not the command ended by then: what it left in its group (a non-interactive sh starts
 * `cmd &` with SIGINT ignored) would otherwise outlive the canceled unit. The group's number is not
 * reused while any process is still in it.
 */
type SignalGroup = (signal: NodeJS.Signals, afterEnd?: boolean) => boolean | Promise<boolean>;

function canceller(signalGroup: SignalGroup): (graceMs: number) => void {
  return (graceMs) => {
    void Promise.resolve(signalGroup("SIGINT")).then((sent) => {
      if (sent) setTimeout(() => void signalGroup("SIGKILL", true), graceMs).unref();
    });
  };
}

export interface ProcessSpec {
  /** The unit's id: names the command to the supervisor. */
  unitId: string;
  command: string;
  args: string[];
  /** The unit's spool directory: the command runs in its work/ and its exit status is written there. */
  spoolDir: string;
  stdinPath: string;
  stdoutPath: string;
  /** The command's whole environment (unitEnvironment): nothing of the agent's is passed otherwise. */
  env: Record<string, string>;
}

/** A spawn made ready: `start` hands the command to the supervisor, and resolves once it runs (or cannot). */
export interface PreparedProcess {
  start(supervisor: Supervisor): Promise<RunningProcess>;
}

export async function startProcess(spec: ProcessSpec & { supervisor: Supervisor }): Promise<RunningProcess> {
  return (await prepareProcess(spec)).start(spec.supervisor);
}

/**
 * Everything before the spawn that starts nothing: whether the command can run at all, and the
 * results file. Split from the spawn so that a unit's start can do it while its start is recorded.
 */
export async function prepareProcess(opts: ProcessSpec): Promise<PreparedProcess> {
  const cwd = join(opts.spoolDir, WORK_DIR);
  const problem = cannotRun(opts.command, cwd);
  if (problem) {
    const error = `cannot start ${opts.command}: ${problem}`;
    const failed: RunningProcess = {
      pid: null,
      identity: Promise.resolve(null),
      exited: Promise.resolve({ exitCode: null, signal: null, error }),
      cancel: () => undefined,
    };
    return { start: async () => failed };
  }
  // Before the command starts: the agent watches this file for results from the moment it returns.
  closeSync(openSync(opts.stdoutPath, "a", 0o600));
  return { start: (supervisor) => spawnCommand(opts, cwd, supervisor) };
}

async function spawnCommand(opts: ProcessSpec, cwd: string, supervisor: Supervisor): Promise<RunningProcess> {
  const supervised = supervisor.run({
    id: opts.unitId,
    // Relative to the cwd, so that they follow the unit's directory if it is renamed (warm.ts).
    exitFile: relative(cwd, join(opts.spoolDir, EXIT_FILE)),
    command: opts.command,
    args: opts.args,
    cwd,
    env: opts.env,
    stdinPath: relative(cwd, opts.stdinPath),
    resultsPath: relative(cwd, opts.stdoutPath),
    agentPid: process.pid,
  });
  const pid = await supervised.pid;
  const identity =
    pid === null
      ? Promise.resolve(null)
      : Promise.all([identifyProcess(pid), supervised.supervisor]).then(([process, by]) => ({
          process,
          supervisor: by,
        }));
  let over = false;
  const exited = supervised.ended
    .then(async (record): Promise<Exit> => {
      const told = record === null ? null : toExit(record);
      if (told) return told;
      // The supervisor was killed: the command (a group of its own) may still run. Wait for it as
      // for an adopted one; only a supervisor can have recorded how it ended.
      const known = await identity;
      if (known) while (await isRunning(known.process)) await sleep(POLL_MS);
      const lost =
        pid === null
          ? `cannot start ${opts.command}: the agent's supervisor ended before it ran the command`
          : SUPERVISOR_LOST;
      return (await readExitFile(opts.spoolDir)) ?? { exitCode: null, signal: null, error: lost };
    })
    .finally(() => {
      over = true;
    });
  const signalGroup: SignalGroup = (signal, afterEnd = false) => {
    if ((over && !afterEnd) || pid === null) return false;
    try {
      process.kill(-pid, signal);
      return true;
    } catch {
      // The group is already gone.
      return false;
    }
  };
  return { pid, identity, exited, cancel: canceller(signalGroup) };
}

/**
 * Follows a unit's process that an earlier run of this agent started. It is not our child, so its
 * end is seen by polling, and its status comes from the exit file its supervisor writes. That
 * supervisor reaps the command before it records it: while the supervisor still runs, its record
 * is waited for. (`supervisor` is null in the records of agents whose supervisor led the group and
 * exited after recording: `identity` names that supervisor then.)
 */
export function adoptProcess(
  identity: ProcessIdentity,
  spoolDir: string,
  pollMs: number,
  supervisor: ProcessIdentity | null = null,
): RunningProcess {
  let ended = false;
  const exited = (async (): Promise<Exit> => {
    while (await isRunning(identity)) await sleep(pollMs);
    ended = true;
    let exit = await readExitFile(spoolDir);
    while (!exit && supervisor && (await isRunning(supervisor))) {
      await sleep(pollMs);
      exit = await readExitFile(spoolDir);
    }
    return exit ?? { exitCode: null, signal: null, error: NO_EXIT_STATUS };
  })();
  const signalGroup: SignalGroup = (signal, afterEnd = false) =>
    // Only while the command is still the process recorded (once it is gone its PID may name
    // another), or at the grace of a cancel that reached it: its group may hold what it left.
    isRunning(identity).then((running) => {
      if (!afterEnd && (ended || !running)) return false;
      try {
        process.kill(-identity.pid, signal);
        return true;
      } catch {
        // The group is already gone.
        return false;
      }
    });
  return {
    pid: identity.pid,
    identity: Promise.resolve({ process: identity, supervisor }),
    exited,
    cancel: canceller(signalGroup),
  };
}
