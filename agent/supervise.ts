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
import { closeSync, fsync, open, openSync, renameSync, statSync, writeSync } from "node:fs";
import { createInterface } from "node:readline";

/** A unit's command, as the agent hands it over. */
export interface SuperviseSpec {
  /** Names the command in the answers (the unit's id). */
  id: string;
  /** Where to record how the command ended (ExitRecord). */
  exitFile: string;
  command: string;
  args: string[];
  cwd: string;
  env: Record<string, string>;
  /** The command's stdin: a file, or a FIFO the agent feeds (stdin-feed.ts). */
  stdinPath: string;
  /** The command's stdout and stderr, appended. */
  resultsPath: string;
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
    return spec as SuperviseSpec;
  } catch {
    return null;
  }
}

/**
 * Whether more commands may come (the agent's end of stdin is open), whether answers still reach
 * it, how many commands have not ended yet, and the stdins being opened (`cut`: let go of because
 * no agent will feed them).
 */
const state = { closed: false, deaf: false, running: 0, opening: new Map<string, { cut: boolean }>() };

function answer(event: SuperviseEvent): void {
  // A stopping agent still reads the answers; a dead one does not (EPIPE): its exit file counts then.
  if (!state.deaf) process.stdout.write(`${JSON.stringify(event)}\n`);
}

function leaveIfDone(): void {
  if (state.closed && state.running === 0) process.exit(0);
}

/**
 * The command's stdin. A FIFO's open waits for its writer, so it is opened off the main thread
 * (a file's open returns at once either way); the agent opens the writing end once a reader waits.
 */
async function openStdin(path: string): Promise<{ fd: number; cut: boolean }> {
  const opening = { cut: false };
  state.opening.set(path, opening);
  try {
    // A bare descriptor (not a FileHandle, which would close it again when collected).
    const fd = await new Promise<number>((resolve, reject) =>
      open(path, "r", (e, fd) => (e ? reject(e) : resolve(fd))),
    );
    return { fd, cut: opening.cut };
  } finally {
    state.opening.delete(path);
  }
}

async function run(spec: SuperviseSpec): Promise<void> {
  state.running++;
  let ended = false;
  const end = (status: ExitRecord) => {
    if (ended) return;
    ended = true;
    void record(spec.exitFile, status).then(() => {
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
  let stdin: number;
  try {
    const opened = await openStdin(spec.stdinPath);
    stdin = opened.fd;
    // The agent died before it fed the FIFO, whose open returned only because main() let it go:
    // a unit never runs on a truncated stdin.
    if (opened.cut) {
      closeSync(stdin);
      return cannotStart(new Error("the agent stopped before it fed the payload"));
    }
  } catch (error) {
    return cannotStart(error);
  }
  try {
    const results = openSync(spec.resultsPath, "a", 0o600);
    try {
      // detached: a session and process group of its own, so that a cancel reaches exactly the unit's processes.
      const child = spawn(spec.command, spec.args, {
        cwd: spec.cwd,
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
    // A FIFO nobody will feed: opening its writing end lets the waiting open return (run() then
    // refuses it). A file's open returns by itself.
    for (const [path, opening] of state.opening) {
      try {
        if (!statSync(path).isFIFO()) continue;
        opening.cut = true;
        closeSync(openSync(path, "w"));
      } catch {
        // Gone meanwhile: its open has failed or returned.
      }
    }
    leaveIfDone();
  });
}

main();
