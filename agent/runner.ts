/**
 * One unit on this agent: fetch its payload over the unit's data socket, check its signature where
 * the work type asks for one (verifysignature), run the work command, stream its results back,
 * report how it ended. The process keeps running while the link is down;
 * each reconnect re-attaches and resumes from what the broker acknowledged, so results arrive
 * exactly once and in order. Unacknowledged bytes in flight are bounded by a window.
 * A unit found in the spool after an agent restart resumes the same way (see spool.ts).
 */
import type { ChildProcess } from "node:child_process";
import { watch, type FSWatcher } from "node:fs";
import { mkdir, open, rm, type FileHandle } from "node:fs/promises";
import { join } from "node:path";
import { parse as parseShell } from "shell-quote";
import { backoffDelay, sleep } from "../shared/backoff.js";
import type { ErrorBody } from "../shared/errors.js";
import { CHUNK_BYTES, decodeFrame, encodeFrame } from "../shared/frames.js";
import { type AgentDataMessage, type Assignment, PROTOCOL_VERSION, decodeBrokerData, encode } from "../shared/protocol.js";
import { refusalDetail, refuse } from "../shared/signing.js";
import { type UnitState, isTerminal } from "../shared/states.js";
import type { WorkCommand } from "./config.js";
import { FULL_BYTES, localFailureDetail, sampleDisk, writeAll } from "./disk.js";
import { type Logger, errorMessage } from "../shared/node/log.js";
import { type Exit, type RunningProcess, adoptProcess, startProcess } from "./process.js";
import { type Recovery, type UnitRecord, WORK_DIR, decideOnClosed, identifyProcess, newRecord, writeRecord } from "./spool.js";
import type { Dispatcher } from "undici";
import { type Link, openLink } from "./socket.js";
import { ResultsSource } from "./output-cap.js";
import { parseBytes } from "../shared/disk.js";
import { unitEnvironment } from "./unit-env.js";
import type { UnitVerifier } from "./verify.js";

export interface RunnerOptions {
  unitId: string;
  workCommand: WorkCommand;
  dataUrl: string;
  /** Read at each connect: the agent swaps its join token for the node's credential once issued. */
  token: () => string;
  /** The agent's join token and credential: no unit's environment may hold them. */
  secrets: () => string[];
  nodeId: string;
  unitDir: string;
  cancelGraceMs: number;
  pingIntervalMs: number;
  /** Checks the unit's signature when its work type has verifysignature. */
  verifier: UnitVerifier | null;
  /** A supervisor ready for the unit's command (the agent's spare); by default one is started then. */
  supervisor?: () => ChildProcess;
  log: Logger;
  /** --ca-file's dispatcher, as the control link's. */
  dispatcher?: Dispatcher | undefined;
  /** Set for a unit an earlier run of this agent started. */
  resumed?: Extract<Recovery, { action: "report" | "adopt" }>;
}

/** Results bytes sent but not yet acknowledged, at most. */
const RESULTS_WINDOW = 8 * 1024 * 1024;
/** Payload bytes requested but not yet received, at most. */
const PAYLOAD_WINDOW = 4 * 1024 * 1024;
const POLL_MS = 250;

/** Command-line arguments of a work command: its params, then runtime params where allowed. */
export function commandArgs(work: WorkCommand, unitParams: Record<string, string>): { args: string[] } | { error: string } {
  const runtime = unitParams.params ?? "";
  if (runtime !== "" && !work.allowruntimeparams) return { error: `work type ${work.worktype} does not allow runtime params` };
  const texts = runtime === "" ? [work.params] : [work.params, runtime];
  // shell-quote drops the braces of ${X} before we could keep it literal; refuse rather than alter it.
  if (texts.some((t) => t.includes("${"))) return { error: "params may not contain ${…}" };
  if (texts.some((t) => t.includes("\0"))) return { error: "params may not contain NUL bytes" };
  // Split like a shell would, but expand nothing: `$X` stays literal, as no shell ever runs.
  const words = texts.flatMap((text) => parseShell(text, (name) => `$${name}`));
  const args = words.filter((w): w is string => typeof w === "string");
  if (args.length !== words.length) return { error: "params may not contain shell operators, globs or comments" };
  return { args };
}

export class UnitRunner {
  readonly done: Promise<void>;
  private finish!: () => void;
  private link: Link | null = null;
  private finished = false;
  private unit: Assignment | null = null;
  private payload: FileHandle | null = null;
  private payloadReceived = 0;
  private payloadRequested = 0;
  private payloadWrites: Promise<unknown> = Promise.resolve();
  private starting = false;
  /** What the agent is doing for the unit, for the detail if it fails locally. */
  private doing = "taking the assignment";
  private process: RunningProcess | null = null;
  private exit: Exit | null = null;
  private cancelRequested = false;
  /** The broker judged the unit (node lost) before it heard how it ended: what is left goes in as a late exit. */
  private judged = false;
  private resultsAcked = 0;
  private resultsSent = 0;
  private pumping = false;
  private finishSent = false;
  private watcher: FSWatcher | null = null;
  private poll: NodeJS.Timeout | null = null;
  private record: UnitRecord;
  /** The results as sent: the spool file, or its capped stream when the work type has an outputcap. */
  private readonly results: ResultsSource;

  constructor(private readonly opts: RunnerOptions) {
    this.done = new Promise((resolve) => (this.finish = resolve));
    this.record = newRecord(opts.unitId, opts.workCommand);
    this.results = new ResultsSource(opts.workCommand.outputcap ? parseBytes(opts.workCommand.outputcap) : null);
    if (opts.resumed) {
      // Never start it again: an earlier run of the agent did.
      this.starting = true;
      if (opts.resumed.action === "report") this.exit = opts.resumed.exit;
    }
  }

  get id(): string {
    return this.opts.unitId;
  }

  private get payloadPath() {
    return join(this.opts.unitDir, "payload");
  }

  private get resultsPath() {
    return join(this.opts.unitDir, "stdout");
  }

  async run(): Promise<void> {
    const { resumed } = this.opts;
    try {
      await mkdir(join(this.opts.unitDir, WORK_DIR), { recursive: true, mode: 0o700 });
      if (!resumed) await writeRecord(this.opts.unitDir, this.record);
    } catch (error) {
      // A full disk, typically: the unit ends now with the cause, and its slot is freed once the
      // broker has the report (below), instead of the unit waiting Pending on this node for ever.
      if (!resumed) this.failLocally(error);
    }
    if (resumed?.action === "adopt") this.follow(adoptProcess(resumed.process, this.opts.unitDir, POLL_MS));
    for (let attempt = 0; !this.finished; attempt++) {
      try {
        this.link = await openLink(
          this.opts.dataUrl,
          this.opts.token(),
          {
            onText: (text) => this.onText(text),
            onBinary: (data) => this.onBinary(data),
          },
          this.opts.pingIntervalMs,
          this.opts.dispatcher,
        );
        attempt = 0;
        this.finishSent = false;
        this.send({ type: "attach", protocol: PROTOCOL_VERSION, nodeId: this.opts.nodeId });
        const code = await Promise.race([this.link.closed, this.done.then(() => 1000)]);
        if (!this.finished) this.opts.log.info("unit:link-lost", { unit: this.id, code });
      } catch (error) {
        this.opts.log.warn("unit:connect-failed", { unit: this.id, error: errorMessage(error) });
      }
      if (!this.finished) await sleep(backoffDelay(attempt, { baseMs: 250, maxMs: 15_000 }));
    }
    await this.done;
  }

  private send(message: AgentDataMessage): void {
    this.link?.send(encode(message));
  }

  private onText(text: string): void {
    const decoded = decodeBrokerData(text);
    if (!decoded.ok) {
      this.opts.log.warn("unit:bad-message", { unit: this.id, ...decoded.error });
      return;
    }
    const msg = decoded.value;
    switch (msg.type) {
      case "attached":
        return void this.onAttached(msg.unit, msg.state, msg.resultsOffset, msg.cancel, msg.exitRecorded).catch((error) => this.abort(error));
      case "results-ack":
        this.resultsAcked = Math.max(this.resultsAcked, msg.offset);
        return void this.pump();
      case "cancel":
        return this.cancel();
      case "closed":
        return this.onClosed(msg.state, msg.exitRecorded);
      case "error":
        return this.onError(msg.error);
    }
  }

  private onError(error: ErrorBody): void {
    this.opts.log.warn("unit:broker-error", { unit: this.id, ...error });
    if (error.code === "not_assigned" || error.code === "unknown_unit") {
      void this.close(`broker refused the unit: ${error.message}`);
    } else {
      // Any other fault: drop the link and re-attach, which resynchronises both offsets.
      this.link?.close(4000, error.code);
    }
  }

  /** True once the command ran here (or its outcome is known): then its spool holds finished work. */
  private get ran(): boolean {
    return this.process !== null || this.exit !== null;
  }

  /** The unit is final at the broker: drop the spool, or stop the command and report what is left (decideOnClosed). */
  private onClosed(state: UnitState, exitRecorded: boolean, attaching = false): void {
    if (decideOnClosed(state, exitRecorded, this.ran) === "drop") return void this.close(`unit is ${state}`);
    if (this.judged) return;
    this.judged = true;
    this.opts.log.warn("unit:judged-while-away", {
      unit: this.id,
      state,
      keeping: "the spool, until the broker has stored the remaining results and the exit",
    });
    // Running it on would be running a unit the broker has given up on; how it ends is still reported.
    this.process?.cancel(this.opts.cancelGraceMs);
    // On attach, the offsets are resynchronised first (below), then the pump starts.
    if (!attaching) void this.pump();
  }

  private async onAttached(unit: Assignment, state: UnitState, resultsOffset: number, cancel: boolean, exitRecorded: boolean): Promise<void> {
    this.unit = unit;
    if (isTerminal(state)) {
      this.onClosed(state, exitRecorded, true);
      if (this.finished) return;
    } else if (cancel) this.cancel();
    if (this.starting && !this.process && !this.exit) return;
    if (this.process || this.exit) {
      if (this.process && !this.judged) this.send({ type: "started", pid: this.process.pid });
      this.resultsAcked = resultsOffset;
      this.resultsSent = resultsOffset;
      return this.pump();
    }
    if (this.cancelRequested) return this.reportWithoutRunning("canceled before it started", true);
    this.doing = "writing the payload";
    if (!this.payload) this.payload = await open(this.payloadPath, "w", 0o600);
    this.payloadRequested = this.payloadReceived;
    this.pullPayload();
    if (unit.payloadSize === 0) await this.payloadComplete();
  }

  private pullPayload(): void {
    const size = this.unit?.payloadSize ?? 0;
    while (this.payloadRequested < size && this.payloadRequested - this.payloadReceived < PAYLOAD_WINDOW) {
      const length = Math.min(1024 * 1024, size - this.payloadRequested);
      this.send({ type: "payload-pull", offset: this.payloadRequested, length });
      this.payloadRequested += length;
    }
  }

  private onBinary(bytes: Uint8Array): void {
    // Failed while taking the payload in (a full disk): later frames have nowhere to go.
    if (this.exit) return;
    const decoded = decodeFrame(bytes);
    if (!decoded.ok || decoded.value.kind !== "payload" || !this.payload) {
      this.opts.log.warn("unit:bad-frame", { unit: this.id });
      return;
    }
    const { offset, data } = decoded.value;
    if (offset !== this.payloadReceived) {
      // Frames of a request made on an earlier link; the current link re-requested from here.
      return;
    }
    const file = this.payload;
    this.payloadReceived += data.byteLength;
    const complete = this.payloadReceived === this.unit?.payloadSize;
    this.payloadWrites = this.payloadWrites
      .then(() => writeAll(file, data, offset))
      .then(() => (complete ? this.payloadComplete() : this.pullPayload()))
      .catch((error) => this.abort(error));
  }

  private async payloadComplete(): Promise<void> {
    if (this.starting || this.process || this.exit || !this.unit) return;
    // From here the payload file is final: a re-attach must not reopen (truncate) it.
    this.starting = true;
    this.doing = "starting the unit";
    await this.payload?.close();
    this.payload = null;
    // A re-attach during the signature check replaces this.unit: run exactly the unit that was checked.
    const unit = this.unit;
    if (this.opts.workCommand.verifysignature) {
      const refusal = await this.checkSignature(unit);
      if (this.finished) return;
      if (refusal) return this.reportWithoutRunning(refusal, false);
    }
    const args = commandArgs(this.opts.workCommand, unit.params);
    if ("error" in args) return this.reportWithoutRunning(args.error, false);
    // Before the spawn: a restarted agent must never run a unit twice, even if it cannot tell whether this one ran.
    await this.saveRecord({ phase: "starting" });
    // Closed meanwhile (canceled, expired, released): its spool is gone and it must not start.
    if (this.finished) return;
    const child = await startProcess({
      command: this.opts.workCommand.command,
      args: args.args,
      spoolDir: this.opts.unitDir,
      stdinPath: this.payloadPath,
      stdoutPath: this.resultsPath,
      env: unitEnvironment(process.env, this.opts.workCommand.envallow, this.opts.secrets()),
      ...(this.opts.supervisor ? { supervisor: this.opts.supervisor } : {}),
    });
    this.follow(child);
    this.opts.log.info("unit:started", { unit: this.id, pid: child.pid, command: this.opts.workCommand.command });
    this.send({ type: "started", pid: child.pid });
    if (this.cancelRequested) child.cancel(this.opts.cancelGraceMs);
    if (child.pid !== null) {
      await this.saveRecord({ phase: "started", process: await identifyProcess(child.pid), startedAt: new Date().toISOString() });
    }
  }

  /** The refusal detail, or null when the unit may run. */
  private async checkSignature(unit: Assignment): Promise<string | null> {
    const { verifier, workCommand } = this.opts;
    const verdict = verifier
      ? await verifier.verify(unit, { unitId: this.id, worktype: workCommand.worktype }, this.payloadPath)
      : refuse("no_verify_key", "this agent has no public key to verify signed units with");
    if (verdict.ok) {
      this.opts.log.info("unit:signature-verified", { unit: this.id, exp: verdict.value.exp });
      return null;
    }
    this.opts.log.warn("unit:signature-refused", { unit: this.id, problem: verdict.problem, message: verdict.message });
    return refusalDetail(verdict);
  }

  private async saveRecord(change: Partial<UnitRecord>): Promise<void> {
    this.record = { ...this.record, ...change };
    await writeRecord(this.opts.unitDir, this.record);
  }

  /** Streams the results of a running process and reports its exit once everything is acknowledged. */
  private follow(child: RunningProcess): void {
    this.process = child;
    this.watchResults();
    void child.exited.then(async (ended) => {
      const exit = await this.explainExit(ended);
      this.exit = exit;
      this.process = null;
      this.opts.log.info("unit:exited", { unit: this.id, ...exit });
      void this.pump();
    });
  }

  /**
   * The command's own error about a full disk went into the full spool, where nobody reads it: a
   * failure with the work dir's disk full when it ended is reported as such, with its status.
   */
  private async explainExit(exit: Exit): Promise<Exit> {
    // A cancel (or a stop after the unit was judged) ends the command by the agent's own signal.
    if (exit.error || exit.exitCode === 0 || this.cancelRequested) return exit;
    const disk = await sampleDisk(this.opts.unitDir, 0);
    if (!disk || disk.freeBytes >= FULL_BYTES) return exit;
    const status = exit.signal ? `killed by signal ${exit.signal}` : `exit status ${exit.exitCode}`;
    return { ...exit, error: `node ${this.opts.nodeId}: no space left on device while spooling the output (${status})` };
  }

  private watchResults(): void {
    try {
      this.watcher = watch(this.resultsPath, () => void this.pump());
    } catch {
      // inotify may be unavailable or exhausted; the poll below still moves the results.
    }
    this.poll = setInterval(() => void this.pump(), POLL_MS);
  }

  /** Sends results from the spool file while the window allows; reports the end once all is acked. */
  private async pump(): Promise<void> {
    if (this.pumping || this.finished || !this.link) return;
    this.pumping = true;
    try {
      // No spool file: the command never started (refused params, spawn failure), so no results.
      const reader = await open(this.resultsPath, "r").catch(() => null);
      if (reader) {
        try {
          const buffer = Buffer.allocUnsafe(CHUNK_BYTES);
          while (this.resultsSent - this.resultsAcked < RESULTS_WINDOW) {
            // A re-attach during the read moves resultsSent: only send what was read where we still are.
            const at = this.resultsSent;
            const bytesRead = await this.results.read(reader, buffer, at, this.exit !== null);
            if (bytesRead === 0) break;
            if (this.resultsSent !== at) continue;
            this.link.send(encodeFrame("results", at, buffer.subarray(0, bytesRead)));
            this.resultsSent = at + bytesRead;
          }
          if (this.exit && !this.finishSent) {
            const size = await this.results.size(reader);
            if (this.resultsAcked === size) this.reportExit(this.exit, size);
          }
        } finally {
          await reader.close();
        }
      } else if (this.exit && !this.finishSent && this.resultsAcked === 0) this.reportExit(this.exit, 0);
    } catch (error) {
      this.opts.log.warn("unit:pump-failed", { unit: this.id, error: errorMessage(error) });
    } finally {
      this.pumping = false;
    }
  }

  private reportExit(exit: Exit, resultsSize: number): void {
    this.finishSent = true;
    this.send({
      type: "finished",
      exitCode: exit.exitCode,
      signal: exit.signal,
      resultsSize,
      canceled: this.cancelRequested,
      ...(exit.error ? { detail: exit.error } : {}),
      ...(this.results.cut ? { outputCut: this.results.cut } : {}),
    });
  }

  private reportWithoutRunning(detail: string, canceled: boolean): void {
    this.exit = { exitCode: null, signal: null, error: detail };
    this.finishSent = true;
    this.send({ type: "finished", exitCode: null, signal: null, resultsSize: 0, canceled, detail });
  }

  private cancel(): void {
    if (this.cancelRequested) return;
    this.cancelRequested = true;
    this.opts.log.info("unit:cancel", { unit: this.id });
    this.process?.cancel(this.opts.cancelGraceMs);
  }

  private abort(error: unknown): void {
    if (!this.process && !this.exit) this.failLocally(error);
    else this.opts.log.error("unit:failed-locally", { unit: this.id, doing: this.doing, error: errorMessage(error) });
  }

  /** Ends a unit that cannot run here; the report goes out now, or on the next attach. */
  private failLocally(error: unknown): void {
    const detail = localFailureDetail(this.opts.nodeId, this.doing, error);
    this.opts.log.error("unit:failed-locally", { unit: this.id, doing: this.doing, error: errorMessage(error), detail });
    this.starting = true;
    this.reportWithoutRunning(detail, false);
  }

  /** The unit is over for this agent: stop its process if still running, drop its spool. */
  private async close(reason: string): Promise<void> {
    if (this.finished) return;
    this.finished = true;
    this.opts.log.info("unit:closed", { unit: this.id, reason });
    this.watcher?.close();
    if (this.poll) clearInterval(this.poll);
    this.link?.close(1000, "unit closed");
    if (this.process) {
      this.process.cancel(this.opts.cancelGraceMs);
      await this.process.exited;
    }
    await this.payload?.close().catch(() => undefined);
    await rm(this.opts.unitDir, { recursive: true, force: true });
    this.finish();
  }
}
