/**
 * One supervisor (supervise.ts) started ahead of need, so that a unit's command does not wait for
 * Node to boot: the agent hands the spare its first unit's command and starts the next spare once
 * that unit is under way. One is enough at any capacity: units that start within one boot of each
 * other are rare, and the one that finds no spare only waits as it would without one.
 *
 * When the next spare starts matters on a small machine: its boot (~50 ms of CPU, more under load)
 * started as the unit is handed over competes with that unit's command, its first results and their
 * way to the broker, which is what a submitter waits for. So `take` leaves it to the caller to say
 * when the unit is under way (`arm`: its first results acknowledged, or it ended), and starts it
 * anyway REARM_AFTER_MS later, for a unit that writes nothing for a long time.
 *
 * A spare holds no unit: it is not in the spool, and it exits when its stdin closes, which happens
 * when the agent stops (stop()) or dies however it dies, so none outlives its agent.
 */
import type { ChildProcess } from "node:child_process";
import { spawnSupervisor } from "./process.js";

/** The latest a spare is started again after one was taken. */
export const REARM_AFTER_MS = 1_000;

export class SpareSupervisor {
  private spare: ChildProcess | null = null;
  private lost = () => undefined;
  private stopped = false;
  private rearm: NodeJS.Timeout | null = null;

  constructor(private readonly start: () => ChildProcess = spawnSupervisor) {}

  /** Starts a spare unless one is waiting. */
  arm(): void {
    if (this.rearm) clearTimeout(this.rearm);
    this.rearm = null;
    if (this.stopped || this.spare) return;
    let child: ChildProcess;
    try {
      child = this.start();
    } catch {
      // Cannot start a process now (spawn throws on bad arguments only); the next unit starts cold.
      return;
    }
    // A spare that failed to start or was killed while waiting is not replaced until the next unit
    // starts, so a spawn that keeps failing does not loop.
    this.lost = () => {
      if (this.spare === child) this.spare = null;
    };
    child.once("error", this.lost);
    child.once("exit", this.lost);
    this.spare = child;
  }

  /** The spare if there is one, else a supervisor started now. The next spare: arm(), or REARM_AFTER_MS from now. */
  take(): ChildProcess {
    const child = this.spare;
    this.spare = null;
    child?.removeListener("error", this.lost).removeListener("exit", this.lost);
    if (!this.rearm && !this.stopped) {
      this.rearm = setTimeout(() => this.arm(), REARM_AFTER_MS);
      // Never what keeps the agent alive.
      this.rearm.unref();
    }
    return child ?? this.start();
  }

  /** Lets the waiting spare go: its stdin closes and it exits. No spare is started after this. */
  stop(): void {
    this.stopped = true;
    if (this.rearm) clearTimeout(this.rearm);
    this.rearm = null;
    this.spare?.stdin?.end();
    this.spare = null;
  }
}
