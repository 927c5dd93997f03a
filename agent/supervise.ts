/**
 * `node supervise.js`: the agent's supervisor. It runs the units' commands and records how each
 * ended in its unit's spool, even when no agent is alive by then (receptor uses a second binary for
 * the same). The agent starts one as it starts, as the leader of a session of its own, and keeps it
 * for its whole run: a unit's command starts without waiting for any process to boot (a Node boot,
 * ~50 ms of CPU, was most of a small unit's start when each unit had a supervisor of its own).
 *
 * The agent writes each command to its stdin as one JSON line (SuperviseSpec). The supervisor
 * opens the payload as the command's stdin and the results file as its stdout and stderr, and
 * starts it as the leader of a new session and process group, which a cancel signals whole. It
 * answers on stdout, one JSON line each (SuperviseEvent): the command's PID once it runs, then how
 * it ended, once that is on disk. The arguments reach the command verbatim: no shell runs.
 *
 * When its stdin ends (the agent stopped or died, however) it takes no more commands and exits
 * once those it runs have ended and are recorded. Unlike a shell's `$?`, Node tells an exit status
 * from a signal, so `exit 130` is not mistaken for SIGINT. Only node: builtins are imported, and
 * it writes nothing to its stderr.
 */
import { spawn } from "node:child_process";
import {
  closeSync,
  constants,
  fsync,
  open,
  openSync,
  readFileSync,
  readlinkSync,
  renameSync,
  statSync,
  writeSync,
} from "node:fs";
import { resolve } from "node:path";
import { createInterface } from "node:readline";

/**
 * A unit's command, as the agent hands it over. The paths other than `cwd` may be relative to it:
 * they then follow the unit's directory if the agent renames it while the command runs (a warm
 * start, warm.ts, begins in a directory of its own and becomes the unit's when one is assigned).
 */
export interface SuperviseSpec {
  /** Names the command in the answers (the unit's id). */
  id: string;
  /** Where to record how the command ended (ExitRecord). */
  exitFile: string;
  command: string;
  args: string[];
  /** The command's: absolute. */
  cwd: string;
  env: Record<string, string>;
  /** The command's stdin: a file, or a FIFO the agent feeds (stdin-feed.ts). */
  stdinPath: string;
  /** The command's stdout and stderr, appended. */
  resultsPath: string;
  /** The agent that hands it over: our parent until it dies (not process.ppid, which it may have done before we started). */
  agentPid: number;
}

/** The exit file: `code` or `signal`, or neither with `error` when the command could not start. */
export interface ExitRecord {
  code: number | null;
  signal: NodeJS.Signals | null;
  error?: string;
}

/** The supervisor's answers: the command runs as `pid`; it ended (recorded in its exit file, if the disk allowed). */
export type SuperviseEvent = { id: string; pid: number } | { id: string; exit: ExitRecord };

/**
 * A signal meant for the agent's whole process group or service (Ctrl-C, a stop) must not end the
 * supervisor before the commands it runs are recorded: it leaves once they have ended.
 */
const STAY_FOR = ["SIGINT", "SIGTERM", "SIGHUP"] as const;

/** How often a command waiting for its FIFO's writer checks that the agent is still there. */
const PARENT_POLL_MS = 100;

/** Recorded when the agent died before it began to feed a streaming payload. */
const AGENT_GONE_BEFORE_STDIN = "the agent stopped before it began to feed the command's stdin";

/**
 * The directory's path now, by a descriptor held on it: it follows a rename (a warm start's
 * directory becoming the unit's). `given` where /proc cannot tell.
 */
function pathNow(dir: number, given: string): string {
  try {
    const path = readlinkSync(`/proc/self/fd/${dir}`);
    return path.startsWith("/") ? path : given;
  } catch {
    return given;
  }
}

/**
 * Whole or not at all (rename), and on disk before the name appears (fsync). The sync waits off the
 * main thread, so that another unit's command is not held behind it.
 */
async function record(exitFile: string, status: ExitRecord): Promise<void> {
  const tmp = `${exitFile}.tmp`;
  try {
    const fd = openSync(tmp, "w", 0o600);
    try {
      writeSync(fd, JSON.stringify(status));
      await new Promise<void>((resolve, reject) => fsync(fd, (error) => (error ? reject(error) : resolve())));
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, exitFile);
  } catch {
    // Nowhere to record it. The agent, if alive, still learns the status from the answer.
  }
}

const isStrings = (value: unknown): value is string[] =>
  Array.isArray(value) && value.every((v) => typeof v === "string");

export function parseSpec(line: string): SuperviseSpec | null {
  try {
    const spec = JSON.parse(line) as Record<keyof SuperviseSpec, unknown>;
    const paths = [spec.id, spec.exitFile, spec.command, spec.cwd, spec.stdinPath, spec.resultsPath];
    if (!isStrings(paths) || !isStrings(spec.args) || typeof spec.env !== "object" || spec.env === null) return null;
    if (!Number.isSafeInteger(spec.agentPid)) return null;
    return spec as SuperviseSpec;
  } catch {
    return null;
  }
}

/**
 * Whether more commands may come (the agent's end of stdin is open), whether answers still reach
 * it, and how many commands have not ended yet.
 */
const state = { closed: false, deaf: false, running: 0 };

function answer(event: SuperviseEvent): void {
  // A stopping agent still reads the answers; a dead one does not (EPIPE): its exit file counts then.
  if (!state.deaf) process.stdout.write(`${JSON.stringify(event)}\n`);
}

function leaveIfDone(): void {
  if (state.closed && state.running === 0) process.exit(0);
}

/**
 * Whether our parent is still `agent` (Node's process.ppid is only the parent at startup): field 4
 * of /proc/self/stat, after the command name in parentheses, which may itself hold spaces. Without
 * /proc, whether the agent's PID still answers a signal 0.
 */
function parentIs(agent: number): boolean {
  try {
    const stat = readFileSync("/proc/self/stat", "latin1");
    return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]) === agent;
  } catch {
    try {
      process.kill(agent, 0);
      return true;
    } catch {
      return false;
    }
  }
}

/**
 * The command's stdin. A payload file opens at once. A FIFO (a streaming payload, stdin-feed.ts)
 * opens only once the agent opens its writing end, and if the agent dies first nobody ever will:
 * so the open waits on a libuv thread while this one checks every PARENT_POLL_MS that our parent is
 * still the agent (when it dies we are handed to init or a subreaper). Null: it died. We then open
 * the writing end ourselves, which ends the open(2) still blocked on the libuv thread: process.exit
 * joins that thread, and would wait for it forever.
 */
function openStdin(path: string, agent: number): Promise<number | null> {
  if (!statSync(path).isFIFO()) return Promise.resolve(openSync(path, "r"));
  if (!parentIs(agent)) return Promise.resolve(null);
  return new Promise((resolve, reject) => {
    // A bare descriptor (not a FileHandle, which would close it again when collected).
    open(path, "r", (error, fd) => {
      clearInterval(watch);
      if (error) reject(error);
      else resolve(fd);
    });
    const release = () => {
      try {
        closeSync(openSync(path, constants.O_WRONLY | constants.O_NONBLOCK));
      } catch {
        // ENXIO: no open(2) waiting after all; there is nothing to release.
      }
    };
    const watch = setInterval(() => {
      if (parentIs(agent)) return;
      clearInterval(watch);
      resolve(null);
      release();
    }, PARENT_POLL_MS);
  });
}

async function run(spec: SuperviseSpec): Promise<void> {
  state.running++;
  // Held until the end is recorded: relative paths are resolved where the directory is then.
  let dir: number | null = null;
  const at = (path: string) => resolve(dir === null ? spec.cwd : pathNow(dir, spec.cwd), path);
  let ended = false;
  const end = (status: ExitRecord) => {
    if (ended) return;
    ended = true;
    void record(at(spec.exitFile), status).then(() => {
      if (dir !== null) closeSync(dir);
      answer({ id: spec.id, exit: status });
      state.running--;
      leaveIfDone();
    });
  };
  const cannotStart = (error: unknown) =>
    end({
      code: null,
      signal: null,
      error: `cannot start ${spec.command}: ${error instanceof Error ? error.message : String(error)}`,
    });
  let stdin: number | null;
  try {
    dir = openSync(spec.cwd, "r");
    stdin = await openStdin(at(spec.stdinPath), spec.agentPid);
  } catch (error) {
    return cannotStart(error);
  }
  // The agent died before it fed the FIFO: a unit never runs on a truncated stdin.
  if (stdin === null) return end({ code: null, signal: null, error: AGENT_GONE_BEFORE_STDIN });
  try {
    const results = openSync(at(spec.resultsPath), "a", 0o600);
    try {
      // detached: a session and process group of its own, so that a cancel reaches exactly the unit's processes.
      const child = spawn(spec.command, spec.args, {
        cwd: pathNow(dir, spec.cwd),
        env: spec.env,
        stdio: [stdin, results, results],
        detached: true,
      });
      // Node reports ENOENT, EACCES and EAGAIN as "error" (and no exit).
      child.once("error", cannotStart);
      child.once("exit", (code, signal) => end({ code, signal }));
      if (child.pid !== undefined) answer({ id: spec.id, pid: child.pid });
    } finally {
      // The command has its own copies now.
      closeSync(results);
    }
  } catch (error) {
    // Thrown rather than reported: E2BIG, a results file that cannot be opened…
    cannotStart(error);
  } finally {
    closeSync(stdin);
  }
}

function main(): void {
  for (const name of STAY_FOR) process.on(name, () => undefined);
  process.stdout.on("error", () => {
    state.deaf = true;
  });
  const lines = createInterface({ input: process.stdin, crlfDelay: Number.POSITIVE_INFINITY });
  lines.on("line", (line) => {
    const spec = parseSpec(line);
    // Anything else is not from the agent: nothing to run, nobody to tell.
    if (spec) void run(spec);
  });
  lines.on("close", () => {
    state.closed = true;
    leaveIfDone();
  });
}

main();
