/**
 * Runs one work command as a child in its own process group: stdin from the payload file,
 * stdout and stderr into one results file (as receptor does), no shell. Cancel sends SIGINT to the
 * whole group, then SIGKILL after a grace period.
 */
import { spawn } from "node:child_process";
import { open } from "node:fs/promises";

export interface Exit {
  exitCode: number | null;
  signal: string | null;
  /** Set when the command could not be started at all. */
  error: string | null;
}

export interface RunningProcess {
  pid: number | null;
  exited: Promise<Exit>;
  /** SIGINT the group now, SIGKILL it after `graceMs` unless it has exited. */
  cancel(graceMs: number): void;
}

export async function startProcess(opts: {
  command: string;
  args: string[];
  cwd: string;
  stdinPath: string;
  stdoutPath: string;
}): Promise<RunningProcess> {
  const stdin = await open(opts.stdinPath, "r");
  const stdout = await open(opts.stdoutPath, "a", 0o600);
  let exitedFlag = false;
  let child;
  try {
    child = spawn(opts.command, opts.args, {
      cwd: opts.cwd,
      stdio: [stdin.fd, stdout.fd, stdout.fd],
      detached: true,
      env: process.env,
    });
  } catch (error) {
    // spawn throws synchronously on invalid arguments; asynchronous failures arrive as "error".
    await Promise.all([stdin.close(), stdout.close()]);
    throw error;
  }
  const exited = new Promise<Exit>((resolve) => {
    child.once("error", (error) => {
      exitedFlag = true;
      resolve({ exitCode: null, signal: null, error: `cannot start ${opts.command}: ${error.message}` });
    });
    child.once("exit", (exitCode, signal) => {
      exitedFlag = true;
      resolve({ exitCode, signal, error: null });
    });
  }).finally(() => Promise.all([stdin.close(), stdout.close()]));
  const signalGroup = (signal: NodeJS.Signals) => {
    if (exitedFlag || child.pid === undefined) return;
    try {
      process.kill(-child.pid, signal);
    } catch {
      // The group is already gone.
    }
  };
  return {
    pid: child.pid ?? null,
    exited,
    cancel(graceMs) {
      signalGroup("SIGINT");
      const timer = setTimeout(() => signalGroup("SIGKILL"), graceMs);
      timer.unref();
      void exited.then(() => clearTimeout(timer));
    },
  };
}
