/**
 * One supervisor (supervise.ts) started ahead of need, so that a unit's command does not wait for
 * Node to boot: the agent hands the spare its first unit's command and starts the next spare at once.
 * One is enough at any capacity: units that start within one boot of each other are rare, and the
 * one that finds no spare only waits as it would without one.
 *
 * A spare holds no unit: it is not in the spool, and it exits when its stdin closes, which happens
 * when the agent stops (stop()) or dies however it dies, so none outlives its agent.
 */
import type { ChildProcess } from "node:child_process";
import { spawnSupervisor } from "./process.js";

export class SpareSupervisor {
  private spare: ChildProcess | null = null;
  private lost = () => undefined;
  private stopped = false;

  constructor(private readonly start: () => ChildProcess = spawnSupervisor) {}

  /** Starts a spare unless one is waiting. */
  arm(): void {
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

  /** The spare if there is one (another is started right after), else a supervisor started now. */
  take(): ChildProcess {
    const child = this.spare;
    this.spare = null;
    child?.removeListener("error", this.lost).removeListener("exit", this.lost);
    // After the caller has written the command: the next spare's fork and boot should not delay it.
    setImmediate(() => this.arm());
    return child ?? this.start();
  }

  /** Lets the waiting spare go: its stdin closes and it exits. No spare is started after this. */
  stop(): void {
    this.stopped = true;
    this.spare?.stdin?.end();
    this.spare = null;
  }
}
