/**
 * The agent's side of its supervisor (supervise.ts): started as the agent starts and kept for its
 * run, so that no unit waits for a process to boot, and so that there is one Node process for the
 * commands however many run (a supervisor per unit cost each unit a Node boot, ~50 ms of CPU, and
 * its memory while it ran). Each unit's command is written to it as one line; its answers are
 * routed back to the unit by id.
 *
 * If it dies (killed: it does nothing that fails), the units it ran learn so (their `ended` is
 * null) and the next unit starts another. When the agent stops or dies however it dies, the
 * supervisor's stdin closes: it records what still runs, then exits, so none outlives its units.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { type ProcessIdentity, identifyProcess } from "./proc-identity.js";
import type { SuperviseSpec } from "./supervise.js";
import { unitEnvironment } from "./unit-env.js";

/** Beside this module, in dist/ as in an installed package. */
const SUPERVISOR = fileURLToPath(new URL("./supervise.js", import.meta.url));

/**
 * Starts a supervisor as the leader of a session of its own (detached: setsid), so that a signal
 * to the agent's process group (Ctrl-C) does not reach it. Its environment is the defaults a unit
 * gets (unit-env.ts), so neither the agent's token nor Node's settings (NODE_OPTIONS,
 * NODE_EXTRA_CA_CERTS…) reach the units' processes; each command gets the environment in its spec.
 */
export function spawnSupervisor(): ChildProcess {
  return spawn(process.execPath, [SUPERVISOR], {
    cwd: "/",
    stdio: ["pipe", "pipe", "ignore"],
    detached: true,
    env: unitEnvironment(process.env, [], []),
  });
}

/** A command handed to the supervisor. */
export interface Supervised {
  /** Its PID once it runs; null if it never did (then `ended` says why, or is null). */
  pid: Promise<number | null>;
  /** How it ended, as the supervisor answered (an ExitRecord, unchecked); null if the supervisor ended before it could tell. */
  ended: Promise<unknown>;
  /** The supervisor that runs it, once identified (null where it cannot be). */
  supervisor: Promise<ProcessIdentity | null>;
}

interface Waiting {
  pid(pid: number | null): void;
  ended(exit: unknown): void;
}

interface Running {
  child: ChildProcess;
  identity: Promise<ProcessIdentity | null>;
  /** The units this supervisor runs, by id, until it tells how each ended. */
  units: Map<string, Waiting>;
}

export class Supervisor {
  private current: Running | null = null;
  private stopped = false;

  constructor(private readonly start: () => ChildProcess = spawnSupervisor) {}

  /** Starts the supervisor unless one runs (or the agent is stopping). */
  ensure(): Running | null {
    if (this.current || this.stopped) return this.current;
    let child: ChildProcess;
    try {
      child = this.start();
    } catch {
      // spawn throws on bad arguments only; the unit fails to start, the next one tries again.
      return null;
    }
    const running: Running = {
      child,
      identity: child.pid === undefined ? Promise.resolve(null) : identifyProcess(child.pid).catch(() => null),
      units: new Map(),
    };
    this.current = running;
    child.stdin?.on("error", () => undefined); // EPIPE once it is gone: "exit" tells the rest
    if (child.stdout) createInterface({ input: child.stdout }).on("line", (line) => answered(running, line));
    let gone = false;
    // "close", not "exit": its last answers are read from the pipe first.
    const lost = () => {
      if (gone) return;
      gone = true;
      if (this.current === running) this.current = null;
      for (const unit of running.units.values()) {
        unit.pid(null);
        unit.ended(null);
      }
      running.units.clear();
    };
    child.once("error", lost);
    child.once("close", lost);
    return running;
  }

  /** Hands the command to the supervisor, starting one if none runs. */
  run(spec: SuperviseSpec): Supervised {
    let pid!: Waiting["pid"];
    let ended!: Waiting["ended"];
    const running = this.ensure();
    const supervised: Supervised = {
      pid: new Promise((resolve) => (pid = resolve)),
      ended: new Promise((resolve) => (ended = resolve)),
      supervisor: running?.identity ?? Promise.resolve(null),
    };
    const stdin = running?.child.stdin;
    if (!running || !stdin?.writable || running.units.has(spec.id)) {
      pid(null);
      ended(null);
      return supervised;
    }
    running.units.set(spec.id, { pid, ended });
    stdin.write(`${JSON.stringify(spec)}\n`);
    return supervised;
  }

  /** Takes no more commands: the supervisor's stdin closes, and it exits once what it runs has ended. */
  stop(): void {
    this.stopped = true;
    this.current?.child.stdin?.end();
  }
}

/**
 * One answer of the supervisor (supervise.ts SuperviseEvent), to the unit it names. Only its shape is
 * checked here; the exit record is checked as an exit file is (process.ts, toExit).
 */
function answered(running: Running, line: string): void {
  let event: { id?: unknown; pid?: unknown; exit?: unknown };
  try {
    event = JSON.parse(line);
  } catch {
    return;
  }
  const unit = typeof event.id === "string" ? running.units.get(event.id) : undefined;
  if (!unit || typeof event.id !== "string") return;
  if (typeof event.pid === "number" && Number.isSafeInteger(event.pid) && event.pid > 0) return unit.pid(event.pid);
  if (event.exit === undefined) return;
  // Ended (never spawned, if it could not start): no PID will come.
  unit.pid(null);
  unit.ended(event.exit);
  running.units.delete(event.id);
}
