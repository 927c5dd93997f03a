/**
 * Starting a unit whose payload is complete: its signature where the work type asks for one, its
 * command line, the spool record that says a spawn may have happened, then the spawn. Any refusal
 * comes back as the detail the unit ends with, without running.
 */
import type { ChildProcess } from "node:child_process";
import type { Logger } from "../shared/node/log.js";
import type { Assignment } from "../shared/protocol.js";
import { commandLine } from "./command-args.js";
import type { WorkCommand } from "./config.js";
import { identifyProcess } from "./proc-identity.js";
import { type RunningProcess, prepareProcess } from "./process.js";
import type { SpoolRecord } from "./spool.js";
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
  /** A supervisor ready for the unit's command (the agent's spare); by default one is started then. */
  supervisor?: (() => ChildProcess) | undefined;
  log: Logger;
}

export interface StartContext extends UnitStartOptions {
  unit: Assignment;
  payloadPath: string;
  /** Settles once the payload file is whole (an inline payload is written while the start is recorded). */
  payloadWritten?: Promise<void>;
  resultsPath: string;
  record: SpoolRecord;
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
    await ctx.payloadWritten;
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
  // What only prepares the spawn (finding the command, creating the results file, the payload) is done
  // meanwhile: the record's two syncs are the longest step of a start.
  const [, prepared] = await Promise.all([
    ctx.record.save({ phase: "starting" }),
    prepareProcess({ ...line, spoolDir: ctx.unitDir, stdinPath: ctx.payloadPath, stdoutPath: ctx.resultsPath }),
    ctx.payloadWritten,
  ]);
  if (ctx.isClosed()) return { closed: true };
  const child = prepared.start(ctx.supervisor);
  ctx.onSpawned(child);
  if (child.pid !== null) {
    await ctx.record.save({
      phase: "started",
      process: await identifyProcess(child.pid),
      startedAt: new Date().toISOString(),
    });
  }
  return { started: true };
}
