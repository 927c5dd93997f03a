import { mkdirSync, writeFileSync } from "node:fs";
import { rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { errorMessage } from "../shared/node/log.js";
import {
  type AgentDataMessage,
  type Assignment,
  type InlineStart,
  PROTOCOL_VERSION,
  encode,
} from "../shared/protocol.js";
import { type UnitState, isTerminal } from "../shared/states.js";
import { explainExit, localFailureDetail } from "./disk.js";
import type { Exit } from "./exit-file.js";
import { PayloadDownload } from "./payload-download.js";
import { type RunningProcess, adoptProcess } from "./process.js";
import { ResultsUpload } from "./results-upload.js";
import { rerunning } from "./rerun.js";
import { parseBytes } from "../shared/disk.js";
import type { Link } from "./socket.js";
import { type Recovery, SpoolRecord, WORK_DIR, decideOnClosed, newRecord } from "./spool.js";
import { DOING, ON_ATTACH, type UnitPhase, beforeRun, move } from "./unit-phase.js";
import { type UnitLinkOptions, keepLinked } from "./unit-link.js";
import { type Attached, type UnitHandlers, unitMessages } from "./unit-messages.js";
import { type UnitStartOptions, startUnit } from "./unit-start.js";
import { STDIN_FIFO, STDIN_WHOLE, StdinFeed, cutStdinDetail, stdinWasCut } from "./stdin-feed.js";
import { streamsPayload } from "./config.js";
import { type CommandLine, commandLine } from "./command-args.js";
import type { WarmProcess } from "./warm.js";

export interface RunnerOptions
  extends UnitStartOptions,
    Pick<UnitLinkOptions, "dataUrl" | "token" | "pingIntervalMs" | "dispatcher"> {
  nodeId: string;
  cancelGraceMs: number;
  /** Set for a unit an earlier run of this agent started. */
  resumed?: Extract<Recovery, { action: "report" | "adopt" }>;
  /** The assignment carried the unit and its whole payload: start it now, attach alongside. */
  inline?: InlineStart;
  /** The command already started for this line, if the agent has one waiting (warm.ts). */
  warm?: (line: CommandLine) => WarmProcess | null;
}

const POLL_MS = 250;

/**
 * The inline payload, if it is whole: exactly the unit's payloadSize bytes, for this unit. Anything
 * else is ignored and the unit takes the usual way (attach, download), so it never runs on a prefix.
 */
export function inlinePayload(unitId: string, start: InlineStart): { unit: Assignment; payload: Buffer } | null {
  if (start.unit.id !== unitId) return null;
  const payload = Buffer.from(start.payload, "base64");
  return payload.byteLength === start.unit.payloadSize ? { unit: start.unit, payload } : null;
}

export class UnitRunner {
  readonly done: Promise<void>;
  private finish!: () => void;
  private phase: UnitPhase = "assigned";
  private link: Link | null = null;
  private unit: Assignment | null = null;
  private readonly payloadPath: string;
  private readonly resultsPath: string;
  private readonly download: PayloadDownload;
  private readonly upload: ResultsUpload;
  private readonly record: SpoolRecord;
  /** Set in phase running. */
  private process: RunningProcess | null = null;
  /** The command's stdin while it runs on a payload still streaming in (stdin-feed.ts); null otherwise. */
  private feed: StdinFeed | null = null;
  /** Set from phase exited on. */
  private exit: Exit | null = null;
  private cancelRequested = false;
  /** The broker judged the unit (node lost) before it heard how it ended: what is left goes in as a late exit. */
  private judged = false;
  /** Resumed after an agent restart that cut its streaming stdin (stdin-feed.ts): it fails whatever its exit. */
  private stdinCut = false;
  /** The payload could not be taken in while the command read it (payloadFailed): it fails with this, whatever its exit. */
  private feedFailure: string | null = null;

  constructor(private readonly opts: RunnerOptions) {
    this.done = new Promise((resolve) => (this.finish = resolve));
    this.payloadPath = join(opts.unitDir, "payload");
    this.resultsPath = join(opts.unitDir, "stdout");
    this.record = new SpoolRecord(opts.unitDir, newRecord(opts.unitId, opts.workCommand));
    this.download = new PayloadDownload({
      path: this.payloadPath,
      onComplete: () => this.payloadComplete(),
      onError: (e) => this.payloadFailed(e),
      onData: (data) => this.feed?.write(data) ?? Promise.resolve(),
    });
    const { outputcap } = opts.workCommand;
    this.upload = new ResultsUpload({ path: this.resultsPath, cap: outputcap ? parseBytes(outputcap) : null });
    // Never start a resumed unit again: an earlier run of the agent did (adopt: run() follows its process).
    if (opts.resumed) this.phase = opts.resumed.action === "report" ? "exited" : "starting";
    if (opts.resumed?.action === "report") this.exit = opts.resumed.exit;
  }

  get id(): string {
    return this.opts.unitId;
  }

  private get closed(): boolean {
    return this.phase === "closed";
  }

  private to(phase: UnitPhase): void {
    this.phase = move(this.phase, phase);
  }

  async run(): Promise<void> {
    const { resumed } = this.opts;
    const inline = !resumed && this.opts.inline ? inlinePayload(this.id, this.opts.inline) : null;
    try {
      // In place, not through the thread pool: see process.ts isExecutableFile.
      mkdirSync(join(this.opts.unitDir, WORK_DIR), { recursive: true, mode: 0o700 });
      // An inline start records `starting` next (unit-start.ts), before its spawn. A restart before
      // that finds no record and drops the directory; the broker, which holds the unit Pending on
      // this node, assigns it again when the hello does not list it (reconcile). So the `assigned`
      // record, two syncs on the start path, would only change how the unit comes back.
      if (!resumed && !inline) await this.record.save();
    } catch (error) {
      // A full disk, typically: the unit ends now with the cause, and its slot is freed once the
      // broker has the report (below), instead of the unit waiting Pending on this node for ever.
      if (!resumed) this.abort(error);
    }
    if (resumed) this.stdinCut = await stdinWasCut(this.opts.unitDir);
    if (resumed?.action === "adopt")
      this.follow(adoptProcess(resumed.process, this.opts.unitDir, POLL_MS, resumed.supervisor));
    if (inline && this.exit === null)
      void this.startInline(inline.unit, inline.payload).catch((error) => this.abort(error));
    await keepLinked({
      ...this.opts,
      handlers: unitMessages(this.id, this.handlers(), this.opts.log),
      onOpen: (link) => this.onOpen(link),
      over: this.done,
      isOver: () => this.closed,
    });
    await this.done;
  }

  private onOpen(link: Link): void {
    this.link = link;
    this.upload.useLink(link);
    // The report went out on the old link, which may have lost it: send it again once acknowledged.
    if (this.phase === "reported") this.to("exited");
    this.send({ type: "attach", protocol: PROTOCOL_VERSION, nodeId: this.opts.nodeId });
  }

  private send(message: AgentDataMessage): void {
    this.link?.send(encode(message));
  }

  /** What each message from the broker does (unit-messages.ts decodes them). */
  private handlers(): UnitHandlers {
    return {
      attached: (msg) => void this.onAttached(msg).catch((error) => this.abort(error)),
      payloadEnd: (size) => this.download.end(size),
      resultsAck: (offset) => {
        this.upload.ack(offset);
        void this.pump();
      },
      cancel: () => this.cancel(),
      unitClosed: (state, exitRecorded) => this.unitClosed(state, exitRecorded),
      refused: (message) => void this.close(`broker refused the unit: ${message}`),
      fault: (code) => this.link?.close(4000, code),
      payload: (offset, data) => this.download.accept(offset, data),
      // Failed while taking the payload in (a full disk): later frames have nowhere to go.
      ignoresFrames: () => this.exit !== null,
    };
  }

  /** The unit is final at the broker: drop the spool, or stop the command and report what is left (decideOnClosed). */
  private unitClosed(state: UnitState, exitRecorded: boolean, attaching = false): void {
    // Ran: the command ran here (or its outcome is known), so its spool holds finished work.
    if (decideOnClosed(state, exitRecorded, this.process !== null || this.exit !== null) === "drop")
      return void this.close(`unit is ${state}`);
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

  private cancel(): void {
    if (this.cancelRequested) return;
    this.cancelRequested = true;
    this.opts.log.info("unit:cancel", { unit: this.id });
    this.process?.cancel(this.opts.cancelGraceMs);
  }

  private async onAttached({ unit, state, resultsOffset, cancel, exitRecorded }: Attached): Promise<void> {
    this.unit = unit;
    if (isTerminal(state)) {
      this.unitClosed(state, exitRecorded, true);
      if (this.closed) return;
    } else if (cancel) this.cancel();
    const plan = ON_ATTACH[this.phase];
    // Started on a streaming payload: the rest of it comes on this link now (the command reads on).
    // Its upload may have ended while no link was up, and the broker tells `payload-end` only then.
    const streaming = unit.payloadStreaming === true;
    if (this.feed && plan !== "download" && this.link)
      await this.download.start(this.link, unit.payloadSize, streaming);
    if (plan === "resume") {
      if (this.process && !this.judged) this.send({ type: "started", pid: this.process.pid });
      this.upload.resume(resultsOffset);
      return this.pump();
    }
    if (plan === "wait") return;
    if (this.cancelRequested) return this.reportWithoutRunning("canceled before it started", true);
    const warm = this.phase === "assigned" ? this.takeWarm(unit) : null;
    if (warm) {
      await this.startWarm(warm);
      if (this.link && !this.closed) await this.download.start(this.link, unit.payloadSize, streaming);
      return;
    }
    if (this.phase === "assigned") this.to("downloading");
    // The payload is still being uploaded and the work type reads a self-delimiting stream: the
    // command starts now on a FIFO that the download feeds (stdin-feed.ts), not after the last byte.
    // The feed exists before the first frame can come, so none passes it by.
    const early = streaming && !this.feed && streamsPayload(this.opts.workCommand);
    if (early) this.feed = new StdinFeed(join(this.opts.unitDir, STDIN_FIFO));
    if (this.link) await this.download.start(this.link, unit.payloadSize, streaming);
    if (early && this.feed) await this.startStreaming(unit, this.feed);
  }

  /** A command of this unit's line started ahead (warm.ts), if the agent holds one. */
  private takeWarm(unit: Assignment): WarmProcess | null {
    if (!this.opts.warm) return null;
    const line = commandLine(this.opts.workCommand, unit.params, process.env, this.opts.secrets());
    return "error" in line ? null : this.opts.warm(line);
  }

  /**
   * The unit takes a command started ahead: recorded as started (in the warm directory, so that it
   * is there the moment the directory becomes the unit's), then fed the payload as it comes.
   */
  private async startWarm(warm: WarmProcess): Promise<void> {
    this.to("downloading");
    this.to("starting");
    try {
      await this.record.save(
        { phase: "started", process: warm.identity, supervisor: warm.supervisor, startedAt: new Date().toISOString() },
        warm.dir,
      );
      await warm.moveTo(this.opts.unitDir);
    } catch (error) {
      // Not the unit's: the unit ends with the cause (abort), the instance goes.
      void warm.discard();
      throw error;
    }
    // Closed meanwhile (close() removed the directory before the rename made it again): let it go.
    if (this.closed) return void warm.discard();
    this.feed = warm.feed;
    this.follow(warm.process);
    this.opts.log.info("unit:started", { unit: this.id, pid: warm.process.pid, warm: true });
    this.send({ type: "started", pid: warm.process.pid });
    if (this.cancelRequested) warm.process.cancel(this.opts.cancelGraceMs);
  }

  private async startStreaming(unit: Assignment, feed: StdinFeed): Promise<void> {
    this.to("starting");
    await feed.create();
    await this.start(unit, feed.path);
    // Never spawned (refused, closed): nobody will open the FIFO.
    if (!this.process) feed.stop();
  }

  private async payloadComplete(): Promise<void> {
    if (this.feed) {
      // Every byte in the pipe first: from the mark on, the command reads the whole payload even if this agent dies.
      await this.feed.drained();
      await writeFile(join(this.opts.unitDir, STDIN_WHOLE), "", { mode: 0o600 });
      return this.feed.end();
    }
    if (this.phase !== "downloading" || !this.unit) return;
    // From here the payload file is final: a re-attach must not reopen (truncate) it.
    this.to("starting");
    await this.download.close();
    await this.start(this.unit);
  }

  /**
   * The payload came whole with the assignment: write it and start, with no round trip first. The
   * phase is starting before the first await, so an `attached` meanwhile waits (ON_ATTACH) and the
   * download never opens the file; `started` goes out on the data socket once it is attached.
   */
  private async startInline(unit: Assignment, payload: Buffer): Promise<void> {
    this.unit = unit;
    this.to("downloading");
    this.to("starting");
    // At most INLINE_PAYLOAD_BYTES, written in place (see process.ts isExecutableFile).
    writeFileSync(this.payloadPath, payload, { mode: 0o600 });
    await this.start(unit, this.payloadPath);
  }

  private async start(unit: Assignment, stdinPath = this.payloadPath): Promise<void> {
    // A re-attach during the signature check replaces this.unit: run exactly the unit that was checked.
    const start = await startUnit({
      ...this.opts,
      unit,
      payloadPath: stdinPath,
      resultsPath: this.resultsPath,
      record: this.record,
      isClosed: () => this.closed,
      // Said before the command runs (its PID is for the log: the broker keeps none), so that the
      // broker's move to Running (two commits) is done by the time the first results come.
      onHandedOver: () => this.send({ type: "started", pid: null }),
      onSpawned: (child) => {
        this.follow(child);
        this.opts.log.info("unit:started", { unit: this.id, pid: child.pid, command: this.opts.workCommand.command });
        if (this.cancelRequested) child.cancel(this.opts.cancelGraceMs);
      },
    });
    if ("refused" in start) this.reportWithoutRunning(start.refused, false);
  }

  /** Streams the results of a running process and reports its exit once everything is acknowledged. */
  private follow(child: RunningProcess): void {
    // Closed during the spawn: the spool is gone, so the command must not run on.
    if (this.closed) return child.cancel(this.opts.cancelGraceMs);
    this.to("running");
    this.process = child;
    this.upload.watch(() => void this.pump(), POLL_MS);
    // What the command wrote before the watch began (it runs by the time the supervisor says so).
    void this.pump();
    void child.exited.then(async (ended) => {
      const exit = await explainExit(ended, this.opts.unitDir, this.opts.nodeId, this.cancelRequested);
      this.opts.log.info("unit:exited", { unit: this.id, ...exit });
      this.feed?.stop();
      if (this.closed) return;
      this.exit = this.feedFailure ? { ...exit, error: this.feedFailure } : exit;
      this.process = null;
      this.to("exited");
      void this.pump();
    });
  }

  /**
   * Sends results while the window allows; reports the end once all is acknowledged. A call while
   * a pump is under way (a file change, an ack, the exit) makes it go round once more (rerun.ts).
   */
  private readonly pump = rerunning(
    () => this.pumpOnce(),
    () => this.closed,
  );

  private async pumpOnce(): Promise<void> {
    if (this.closed) return;
    try {
      const size = await this.upload.pump(this.phase === "exited");
      if (size !== null && this.exit && this.phase === "exited") this.reportExit(this.exit, size, this.cancelRequested);
    } catch (error) {
      this.opts.log.warn("unit:pump-failed", { unit: this.id, error: errorMessage(error) });
    }
  }

  private reportExit(exit: Exit, resultsSize: number, canceled: boolean): void {
    this.to("reported");
    const { exitCode, signal } = exit;
    const error = this.stdinCut && !exit.error ? cutStdinDetail(exit) : exit.error;
    const cut = this.upload.cut;
    this.send({
      type: "finished",
      exitCode,
      signal,
      resultsSize,
      canceled,
      ...(error ? { detail: error } : {}),
      ...(cut ? { outputCut: cut } : {}),
    });
  }

  /** Ends a unit that cannot run here; the report goes out now, or on the next attach. */
  private reportWithoutRunning(detail: string, canceled: boolean): void {
    if (this.closed) return; // closed meanwhile: nobody is left to tell
    this.exit = { exitCode: null, signal: null, error: detail };
    this.reportExit(this.exit, 0, canceled);
  }

  /**
   * The payload could not be written (a full disk). A command already reading it from the FIFO
   * (early or warm start) would wait for the rest for ever, and the unit with it: its stdin is cut
   * and it is stopped, and the unit fails with the cause whatever its exit.
   */
  private payloadFailed(error: unknown): void {
    const { feed, process } = this;
    if (!feed || !process) return this.abort(error);
    const doing = DOING.downloading;
    this.feedFailure = localFailureDetail(this.opts.nodeId, doing, error);
    this.opts.log.error("unit:failed-locally", {
      unit: this.id,
      doing,
      error: errorMessage(error),
      detail: this.feedFailure,
    });
    feed.stop();
    process.cancel(this.opts.cancelGraceMs);
  }

  /** A local fault: before the command runs it ends the unit (beforeRun); after, it is logged. */
  private abort(error: unknown): void {
    const doing = DOING[this.phase];
    const detail = beforeRun(this.phase) ? localFailureDetail(this.opts.nodeId, doing, error) : undefined;
    this.opts.log.error("unit:failed-locally", {
      unit: this.id,
      doing,
      error: errorMessage(error),
      ...(detail ? { detail } : {}),
    });
    if (detail) this.reportWithoutRunning(detail, false);
  }

  /** The unit is over for this agent: stop its process if still running, drop its spool. */
  private async close(reason: string): Promise<void> {
    if (this.closed) return;
    this.to("closed");
    this.opts.log.info("unit:closed", { unit: this.id, reason });
    this.upload.unwatch();
    this.link?.close(1000, "unit closed");
    this.process?.cancel(this.opts.cancelGraceMs);
    await this.process?.exited;
    this.feed?.stop();
    await this.download.close().catch(() => undefined);
    await this.record.close();
    // Retried: a command handed over as the unit closed can still have its exit written meanwhile.
    // A spool left behind is dropped by the next start (no record) or reported again; never a crash.
    await rm(this.opts.unitDir, { recursive: true, force: true, maxRetries: 3 }).catch((error) =>
      this.opts.log.warn("unit:spool-not-removed", { unit: this.id, error: errorMessage(error) }),
    );
    this.finish();
  }
}
