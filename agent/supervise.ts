/**
 * `node supervise.js`: runs one work command and records how it ended in the unit's spool, even when
 * no agent is alive by then (receptor uses a second binary for the same). The agent starts it ahead
 * of need as the leader of a new process group, then writes the unit's command to its stdin as one
 * JSON line (SuperviseSpec); it opens the payload as the command's stdin and the results file as its
 * stdout and stderr, and the command inherits the group. The arguments reach the command verbatim:
 * no shell runs. Waiting pre-started saves a unit Node's boot (~75 ms on a slow core); a supervisor
 * whose stdin closes before a command came (its agent stopped or died) exits.
 *
 * Unlike a shell's `$?`, Node tells an exit status from a signal, so `exit 130` is not mistaken for
 * SIGINT. Only node: builtins are imported so that it starts fast, and it writes nothing to its own
 * stdout or stderr.
 */
import { spawn } from "node:child_process";
import { closeSync, fsyncSync, open, openSync, readFileSync, readSync, renameSync, statSync, writeSync } from "node:fs";
import { constants as fsConstants } from "node:fs";
import { constants } from "node:os";
import { resolve } from "node:path";

/**
 * The unit's command, as the agent hands it over. The paths other than `cwd` may be relative to it:
 * they then follow the unit's directory if the agent renames it while the command runs (a warm
 * start, warm.ts, begins in a directory of its own and becomes the unit's when one is assigned).
 */
export interface SuperviseSpec {
  /** Where to record how the command ended (ExitRecord). */
  exitFile: string;
  command: string;
  args: string[];
  /** Ours and the command's: absolute. */
  cwd: string;
  env: Record<string, string>;
  /** The command's stdin. */
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

/** A shell's status for a command it could not start. */
const CANNOT_START = 127;
const CANCEL_SIGNALS = ["SIGINT", "SIGTERM", "SIGHUP"] as const;
const keepRunning = () => undefined;

/** Whole or not at all (rename), and on disk before the name appears (fsync). */
function record(exitFile: string, status: ExitRecord): void {
  const tmp = `${exitFile}.tmp`;
  try {
    const fd = openSync(tmp, "w", 0o600);
    try {
      writeSync(fd, JSON.stringify(status));
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, exitFile);
  } catch {
    // Nowhere to say so. The agent still learns the status from how we exit.
  }
}

/** Re-raised, these would not end us: Node ignores SIGPIPE and starts its inspector on SIGUSR1. */
const NOT_RERAISED = new Set<NodeJS.Signals>(["SIGPIPE", "SIGUSR1"]);

/** Ends the way the command did, so that our parent's wait status is the command's. */
function exitLike(code: number | null, signal: NodeJS.Signals | null): void {
  if (signal === null) process.exit(code ?? CANNOT_START);
  for (const name of CANCEL_SIGNALS) process.removeListener(name, keepRunning);
  if (!NOT_RERAISED.has(signal)) process.kill(process.pid, signal);
  // Not re-raised, or it did not end us: what a shell reports for a command killed by the signal.
  process.exit(128 + constants.signals[signal]);
}

const isStrings = (value: unknown): value is string[] =>
  Array.isArray(value) && value.every((v) => typeof v === "string");

function parseSpec(line: string): SuperviseSpec | null {
  try {
    const spec = JSON.parse(line) as Record<keyof SuperviseSpec, unknown>;
    const paths = [spec.exitFile, spec.command, spec.cwd, spec.stdinPath, spec.resultsPath];
    if (!isStrings(paths) || !isStrings(spec.args) || typeof spec.env !== "object" || spec.env === null) return null;
    if (!Number.isSafeInteger(spec.agentPid)) return null;
    return spec as SuperviseSpec;
  } catch {
    return null;
  }
}

/**
 * Blocks until the spec's line has come, or stdin ends first (null). Blocking is right here: there
 * is nothing else to do, and signals that arrive meanwhile are queued for the handlers.
 */
function readSpec(): SuperviseSpec | null {
  const chunks: Buffer[] = [];
  const buffer = Buffer.alloc(64 * 1024);
  for (;;) {
    let read: number;
    try {
      read = readSync(0, buffer);
    } catch (error) {
      // A non-blocking stdin (not the pipe the agent gives) has nothing yet: wait a little.
      if ((error as NodeJS.ErrnoException).code !== "EAGAIN") return null;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1);
      continue;
    }
    if (read === 0) return null;
    const newline = buffer.subarray(0, read).indexOf(10);
    chunks.push(Buffer.from(buffer.subarray(0, newline < 0 ? read : newline)));
    if (newline >= 0) return parseSpec(Buffer.concat(chunks).toString("utf8"));
  }
}

/** How often a supervisor waiting for its FIFO's writer checks that the agent is still there. */
const PARENT_POLL_MS = 100;

/**
 * Whether our parent is still `agent` (Node's process.ppid is only the parent at startup): field 4 of /proc/self/stat,
 * after the command name in parentheses, which may itself hold spaces. Without /proc, whether the
 * agent's PID still answers a signal 0.
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
 * still the agent that handed us the spec (when it dies we are handed to init or a subreaper). Null:
 * it died. We then open the writing end ourselves, which ends the open(2) still blocked on the libuv
 * thread: process.exit joins that thread, and would wait for it forever.
 */
function openStdin(path: string, agent: number): Promise<number | null> {
  if (!statSync(path).isFIFO()) return Promise.resolve(openSync(path, "r"));
  if (!parentIs(agent)) return Promise.resolve(null);
  return new Promise((resolve, reject) => {
    open(path, "r", (error, fd) => {
      clearInterval(watch);
      if (error) reject(error);
      else resolve(fd);
    });
    const release = () => {
      try {
        closeSync(openSync(path, fsConstants.O_WRONLY | fsConstants.O_NONBLOCK));
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

/** Recorded when the agent died before it began to feed a streaming payload. */
const AGENT_GONE_BEFORE_STDIN = "the agent stopped before it began to feed the command's stdin";

async function main(): Promise<void> {
  // A cancel signals the whole group. A handler (not SIG_IGN) keeps us alive to record the status,
  // and the command still gets the default action: libuv resets every disposition before execve
  // (https://github.com/libuv/libuv/pull/1376).
  for (const name of CANCEL_SIGNALS) process.on(name, keepRunning);
  const spec = readSpec();
  // No command: the agent let its spare go (or wrote something else), and there is nothing to record.
  if (spec === null) process.exit(0);
  // Until the chdir, a relative exit file is resolved by hand (the cwd may be gone: then so is the file's place).
  let exitFile = resolve(spec.cwd, spec.exitFile);
  const cannotStart = (error: Error) => {
    record(exitFile, { code: null, signal: null, error: `cannot start ${spec.command}: ${error.message}` });
    process.exit(CANNOT_START);
  };
  let child;
  try {
    process.chdir(spec.cwd);
    exitFile = spec.exitFile;
    const stdin = await openStdin(spec.stdinPath, spec.agentPid);
    if (stdin === null) {
      record(exitFile, { code: null, signal: null, error: AGENT_GONE_BEFORE_STDIN });
      process.exit(CANNOT_START);
    }
    const results = openSync(spec.resultsPath, "a", 0o600);
    child = spawn(spec.command, spec.args, { stdio: [stdin, results, results], env: spec.env });
    // The command has its own copies now.
    closeSync(stdin);
    closeSync(results);
  } catch (error) {
    // Node reports ENOENT, EACCES and EAGAIN as "error" but throws others (E2BIG) synchronously.
    return cannotStart(error instanceof Error ? error : new Error(String(error)));
  }
  child.once("error", cannotStart);
  child.once("exit", (code, signal) => {
    record(exitFile, { code, signal });
    exitLike(code, signal);
  });
}

void main();
