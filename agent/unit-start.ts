/**
 * Starting a unit whose payload is complete: its signature where the work type asks for one, its
 * command line, the spool record that says a spawn may have happened, then the spawn. Any refusal
 * comes back as the detail the unit ends with, without running.
 */
import type { Logger } from "../shared/node/log.js";
import type { Assignment } from "../shared/protocol.js";
import { commandLine } from "./command-args.js";
import type { WorkCommand } from "./config.js";
import { type RunningProcess, prepareProcess } from "./process.js";
import type { SpoolRecord } from "./spool.js";
import type { Supervisor } from "./supervisor.js";
import { type UnitVerifier, checkSignature } from "./verify.js";

/** What starting a unit needs of the runner's options (runner.ts). */
export interface UnitStartOptions {
  unitId: string;
  workCommand: WorkCommand;
  unitDir: string;
  /** Checks the unit's signature when its work type has verifysignature. */
  verifier: UnitVerifier | null;
  /** The agent's join token and credential: no unit's environment may hold them. */
  secrets: () => string[];
  /** The agent's supervisor, which runs the unit's command (supervisor.ts). */
  supervisor: Supervisor;
  log: Logger;
}

export interface StartContext extends UnitStartOptions {
  unit: Assignment;
  /** The command's stdin: the whole payload, or the FIFO a streaming payload is fed into. */
  payloadPath: string;
  resultsPath: string;
  record: SpoolRecord;
  /** Told once the command is handed to the supervisor, before it runs: the unit is started. */
  onHandedOver: () => void;
  /** Told of the process as soon as it is spawned, before its identity is recorded. */
  onSpawned: (child: RunningProcess) => void;
  /** The unit was closed (canceled, expired, released): its spool is gone and it must not start. */
  isClosed: () => boolean;
}

/** Refused: the detail the unit ends with; closed: it was closed meanwhile and must not start. */
export type Started = { started: true } | { refused: string } | { closed: true };

export async function startUnit(ctx: StartContext): Promise<Started> {
  const { unit, workCommand: work } = ctx;
  if (work.verifysignature) {
    const refusal = await checkSignature(
      ctx.verifier,
      unit,
      { unitId: ctx.unitId, worktype: work.worktype },
      ctx.payloadPath,
      ctx.log,
    );
    if (ctx.isClosed()) return { closed: true };
    if (refusal) return { refused: refusal };
  }
  const line = commandLine(work, unit.params, process.env, ctx.secrets());
  if ("error" in line) return { refused: line.error };
  // Before the spawn: a restarted agent must never run a unit twice, even if it cannot tell whether this one ran.
  // What only prepares the spawn (finding the command, creating the results file) is done meanwhile:
  // the record's two syncs are the longest step of a start.
  const [, prepared] = await Promise.all([
    ctx.record.save({ phase: "starting" }),
    prepareProcess({
      ...line,
      unitId: ctx.unitId,
      spoolDir: ctx.unitDir,
      stdinPath: ctx.payloadPath,
      stdoutPath: ctx.resultsPath,
    }),
  ]);
  if (ctx.isClosed()) return { closed: true };
  // The command is handed over as start() is called; the answer (its PID) comes as it runs.
  const starting = prepared.start(ctx.supervisor);
  ctx.onHandedOver();
  const child = await starting;
  ctx.onSpawned(child);
  const identity = await child.identity;
  if (identity) await ctx.record.save({ phase: "started", ...identity, startedAt: new Date().toISOString() });
  return { started: true };
}
