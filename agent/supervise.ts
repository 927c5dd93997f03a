/**
 * `node supervise.js <exit file> <command> <args…>`: runs one work command and records how it
 * ended in the unit's spool, even when no agent is alive by then (receptor uses a second binary for
 * the same). The agent starts it as the leader of the unit's process group with stdin the payload
 * and stdout and stderr the results; the command inherits all three and the group. The arguments
 * reach the command verbatim: no shell runs.
 *
 * Unlike a shell's `$?`, Node tells an exit status from a signal, so `exit 130` is not mistaken for
 * SIGINT. Only node: builtins are imported so that it starts fast, and it never writes to its
 * stdout or stderr, which are the unit's results.
 */
import { spawn } from "node:child_process";
import { closeSync, fsyncSync, openSync, renameSync, writeSync } from "node:fs";
import { constants } from "node:os";

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
    // Nowhere to say so: stderr is the results. The agent still learns the status from how we exit.
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

function main(): void {
  const [exitFile, command, ...args] = process.argv.slice(2);
  if (exitFile === undefined || command === undefined) process.exit(CANNOT_START);
  // A cancel signals the whole group. A handler (not SIG_IGN) keeps us alive to record the status,
  // and the command still gets the default action: libuv resets every disposition before execve
  // (https://github.com/libuv/libuv/pull/1376).
  for (const name of CANCEL_SIGNALS) process.on(name, keepRunning);
  const cannotStart = (error: Error) => {
    record(exitFile, { code: null, signal: null, error: `cannot start ${command}: ${error.message}` });
    process.exit(CANNOT_START);
  };
  let child;
  try {
    child = spawn(command, args, { stdio: "inherit" });
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

main();
