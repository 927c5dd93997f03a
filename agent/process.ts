/**
 * Runs one work command in its own process group: stdin from the payload file, stdout and stderr
 * into one results file (as receptor does). Cancel sends SIGINT to the whole group, then SIGKILL
 * after a grace period.
 *
 * The command runs under supervise.js, a small Node process that leads the group and records the
 * command's exit status in the spool, so the status survives an agent that dies first. The agent
 * keeps one supervisor started ahead of need (spare.ts) and hands it the command when a unit starts.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { constants } from "node:fs";
import { access, open, stat } from "node:fs/promises";
import { delimiter, join, relative, resolve as resolvePath } from "node:path";
import { fileURLToPath } from "node:url";
import { sleep } from "../shared/backoff.js";
import { EXIT_FILE, type Exit, NO_EXIT_STATUS, readExitFile } from "./exit-file.js";
import { type ProcessIdentity, isRunning } from "./proc-identity.js";
import { WORK_DIR } from "./spool.js";
import type { SuperviseSpec } from "./supervise.js";
import { unitEnvironment } from "./unit-env.js";

export interface RunningProcess {
  pid: number | null;
  exited: Promise<Exit>;
  /** SIGINT the group now, SIGKILL it after `graceMs` unless it has exited. */
  cancel(graceMs: number): void;
}

/** Beside this module, in dist/ as in an installed package. */
const SUPERVISOR = fileURLToPath(new URL("./supervise.js", import.meta.url));

async function isExecutableFile(path: string): Promise<boolean> {
  try {
    await access(path, constants.X_OK);
    return (await stat(path)).isFile();
  } catch {
    return false;
  }
}

/** Why `command` could not start; checked before spawning so that the unit's detail says it plainly. */
async function cannotRun(command: string, cwd: string): Promise<string | null> {
  if (command.includes("/"))
    return (await isExecutableFile(resolvePath(cwd, command))) ? null : "not an executable file";
  for (const dir of (process.env.PATH ?? "").split(delimiter).filter(Boolean)) {
    if (await isExecutableFile(resolvePath(cwd, dir, command))) return null;
  }
  return "not found on PATH";
}

function canceller(signalGroup: (signal: NodeJS.Signals) => void, exited: Promise<Exit>): (graceMs: number) => void {
  return (graceMs) => {
    signalGroup("SIGINT");
    const timer = setTimeout(() => signalGroup("SIGKILL"), graceMs);
    timer.unref();
    void exited.then(() => clearTimeout(timer));
  };
}

/**
 * The supervisor's own environment: the defaults a unit gets (unit-env.ts), so neither the agent's
 * token nor Node's settings (NODE_OPTIONS, NODE_EXTRA_CA_CERTS…) reach the unit's process group. A
 * CA bundle alone is parsed at every Node start (45 ms of a 100 ms start here) and the supervisor
 * makes no TLS connection. The command gets the environment in its spec.
 */
const supervisorEnv = () => unitEnvironment(process.env, [], []);

/**
 * Starts a supervisor that waits on its stdin for the command to run (see supervise.ts), as the
 * leader of a new process group (detached: setsid), so that a cancel reaches the whole group.
 */
export function spawnSupervisor(): ChildProcess {
  return spawn(process.execPath, [SUPERVISOR], {
    cwd: "/",
    stdio: ["pipe", "ignore", "ignore"],
    detached: true,
    env: supervisorEnv(),
  });
}

export interface ProcessSpec {
  command: string;
  args: string[];
  /** The unit's spool directory: the command runs in its work/ and its exit status is written there. */
  spoolDir: string;
  stdinPath: string;
  stdoutPath: string;
  /** The command's whole environment (unitEnvironment): nothing of the agent's is passed otherwise. */
  env: Record<string, string>;
}

/** A spawn made ready: `start` hands the command to a supervisor (by default one started then). */
export interface PreparedProcess {
  start(supervisor?: () => ChildProcess): RunningProcess;
}

export async function startProcess(spec: ProcessSpec & { supervisor?: () => ChildProcess }): Promise<RunningProcess> {
  return (await prepareProcess(spec)).start(spec.supervisor);
}

/**
 * Everything before the spawn that starts nothing: whether the command can run at all, and the
 * results file. Split from the spawn so that a unit's start can do it while its start is recorded.
 */
export async function prepareProcess(opts: ProcessSpec): Promise<PreparedProcess> {
  const cwd = join(opts.spoolDir, WORK_DIR);
  const problem = await cannotRun(opts.command, cwd);
  if (problem) {
    const error = `cannot start ${opts.command}: ${problem}`;
    const failed: RunningProcess = {
      pid: null,
      exited: Promise.resolve({ exitCode: null, signal: null, error }),
      cancel: () => undefined,
    };
    return { start: () => failed };
  }
  // Before the command starts: the agent watches this file for results from the moment it returns.
  await (await open(opts.stdoutPath, "a", 0o600)).close();
  return { start: (supervisor = spawnSupervisor) => spawnCommand(opts, cwd, supervisor) };
}

function spawnCommand(opts: ProcessSpec, cwd: string, supervisor: () => ChildProcess): RunningProcess {
  const child = supervisor();
  // Relative to the cwd, so that they follow the unit's directory if it is renamed (warm.ts).
  const spec: SuperviseSpec = {
    exitFile: relative(cwd, join(opts.spoolDir, EXIT_FILE)),
    command: opts.command,
    args: opts.args,
    cwd,
    env: opts.env,
    stdinPath: relative(cwd, opts.stdinPath),
    resultsPath: relative(cwd, opts.stdoutPath),
    agentPid: process.pid,
  };
  let undelivered: string | null = null;
  child.stdin?.once("error", (error) => (undelivered = error.message));
  child.stdin?.end(`${JSON.stringify(spec)}\n`);
  let exitedFlag = false;
  const exited = new Promise<Exit>((resolve) => {
    child.once("error", (error) => {
      exitedFlag = true;
      resolve({ exitCode: null, signal: null, error: `cannot start ${opts.command}: ${error.message}` });
    });
    child.once("exit", (code, signal) => {
      exitedFlag = true;
      // The supervisor ends as its command did, but only its file can say why a command did not
      // start, and it has none when the group was SIGKILLed.
      const lost: Exit = {
        exitCode: null,
        signal: null,
        error: `cannot start ${opts.command}: its supervisor ended before it got the command (${undelivered})`,
      };
      resolve(
        readExitFile(opts.spoolDir).then(
          (exit) => exit ?? (undelivered === null ? { exitCode: code, signal, error: null } : lost),
        ),
      );
    });
  });
  const signalGroup = (signal: NodeJS.Signals) => {
    if (exitedFlag || child.pid === undefined) return;
    try {
      process.kill(-child.pid, signal);
    } catch {
      // The group is already gone.
    }
  };
  return { pid: child.pid ?? null, exited, cancel: canceller(signalGroup, exited) };
}

/**
 * Follows a unit's process that an earlier run of this agent started. It is not our child, so its
 * end is seen by polling, and its status comes from the exit file its supervisor writes.
 */
export function adoptProcess(identity: ProcessIdentity, spoolDir: string, pollMs: number): RunningProcess {
  let ended = false;
  const exited = (async (): Promise<Exit> => {
    while (await isRunning(identity)) await sleep(pollMs);
    ended = true;
    return (await readExitFile(spoolDir)) ?? { exitCode: null, signal: null, error: NO_EXIT_STATUS };
  })();
  const signalGroup = (signal: NodeJS.Signals) =>
    // Only while the supervisor is still the process recorded: once it is gone its PID may name another.
    void isRunning(identity).then((running) => {
      if (ended || !running) return;
      try {
        process.kill(-identity.pid, signal);
      } catch {
        // The group is already gone.
      }
    });
  return { pid: identity.pid, exited, cancel: canceller(signalGroup, exited) };
}
