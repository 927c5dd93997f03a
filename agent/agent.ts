/**
 * The agent's control link: dial out to the mesh, say hello (node id, work types, capacity, tags,
 * versions, units still held), take assignments, and reconnect whenever the link drops: within
 * 2 s at first, spread at random, then less often the longer the broker stays away
 * (shared/backoff.ts). Each assigned unit gets a UnitRunner with its own data link. Units
 * spooled by an earlier run of the agent are taken up again before the first hello (spool.ts).
 * What it says in hello (hello.ts), its disk reports (disk.ts), health checks (health.ts) and
 * lifetime limits (lifetime.ts) live beside their logic; this class wires them to the link.
 */
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { CONTROL_RECONNECT, reconnectDelay, sleep } from "../shared/backoff.js";
import type { ErrorBody } from "../shared/errors.js";
import {
  type AgentControlMessage,
  type InlineStart,
  type Versions,
  decodeBrokerControl,
  encode,
} from "../shared/protocol.js";
import type { WorkCommand } from "./config.js";
import { DiskWatch } from "./disk.js";
import { credentialBrokerElsewhere, credentialPath, loadCredential, saveCredential } from "./credential.js";
import { type Logger, errorMessage } from "../shared/node/log.js";
import { AgentRefused, type ControlFailure, judgeFailure } from "./refusal.js";
import { answerProbe } from "./health.js";
import { helloMessage } from "./hello.js";
import { type LifetimeLimits, LifetimeWatch, NO_LIMITS } from "./lifetime.js";
import { UnitRunner } from "./runner.js";
import { Supervisor } from "./supervisor.js";
import { WarmPool } from "./warm.js";
import { type CommandLine, commandLine } from "./command-args.js";
import { type Recovery, takeUpSpool } from "./spool.js";
import { type Link, SilentPeer, linkUrl, openLink, probeHandshake } from "./socket.js";
import type { Dispatcher } from "undici";
import type { UnitVerifier } from "./verify.js";

export interface AgentOptions {
  broker: string;
  mesh: string;
  token: string;
  nodeId: string;
  workDir: string;
  capacity: number;
  tags: Record<string, string>;
  workCommands: WorkCommand[];
  versions: Versions;
  cancelGraceMs: number;
  /** Below this much free space in workDir the node takes no units (--min-free). */
  minFreeBytes: number;
  /** Checks units of work types with verifysignature; null when no verify key is configured. */
  verifier: UnitVerifier | null;
  log: Logger;
  /** How to reach the broker when it needs more than Node's CAs (--ca-file). */
  dispatcher?: Dispatcher | undefined;
  /** --max-units, --idle-exit, --max-uptime (lifetime.ts); absent: none. */
  lifetime?: LifetimeLimits;
}

/** Until the broker's welcome says otherwise; matches the broker's default. */
const DEFAULT_PING_MS = 5_000;

export class Agent {
  private readonly runners = new Map<string, UnitRunner>();
  private readonly waiting: { unitId: string; work: WorkCommand }[] = [];
  private link: Link | null = null;
  private stopped = false;
  private pingIntervalMs = DEFAULT_PING_MS;
  /** The join token until the broker issues this node's credential; the credential from then on. */
  private token: string;
  private switchingToCredential = false;
  private welcomed = false;
  /** The error the broker answered this link's hello with, if it refused it. */
  private helloRefusal: ErrorBody | null = null;
  /** Runs the units' commands and records how they end (supervisor.ts). */
  private readonly supervisor = new Supervisor();
  /** Commands of warmstart work types started ahead (warm.ts). */
  private readonly warm: WarmPool;
  /** The work dir's free space (disk.ts): sampled, and reported on a welcomed link. */
  private readonly disk: DiskWatch;
  /** Lifetime limits (lifetime.ts): what this run has taken, since when it holds nothing, why it leaves. */
  private readonly lifetime: LifetimeWatch;

  constructor(private readonly opts: AgentOptions) {
    this.token = opts.token;
    this.warm = new WarmPool({
      dir: join(opts.workDir, "warm"),
      workCommands: opts.workCommands,
      lineFor: (work) => commandLine(work, {}, process.env, this.secrets),
      supervisor: this.supervisor,
      log: opts.log,
    });
    this.disk = new DiskWatch(opts.workDir, opts.minFreeBytes, opts.log, {
      welcomed: () => this.welcomed && this.link !== null,
      send: (disk) => this.send({ type: "disk", disk }),
    });
    this.lifetime = new LifetimeWatch(
      opts.lifetime ?? NO_LIMITS,
      () => this.held,
      (reason) => this.leave(reason),
    );
  }

  /** Set once the agent leaves for good; run() then returns after the units held are done. */
  get leaving(): string | null {
    return this.lifetime.leaving;
  }

  private get scope() {
    return { broker: this.opts.broker, mesh: this.opts.mesh, nodeId: this.opts.nodeId };
  }

  /**
   * Runs until stop(): one control link at a time, reconnecting after every loss. Throws
   * AgentRefused when the broker refuses this node in a way no retry can change (see refusal.ts).
   */
  async run(): Promise<void> {
    const { log } = this.opts;
    this.token = (await loadCredential(this.opts.workDir, this.scope)) ?? this.opts.token;
    await mkdir(this.opts.workDir, { recursive: true, mode: 0o700 });
    await takeUpSpool(this.opts.workDir, {
      workCommands: this.opts.workCommands,
      log,
      resume: (unitId, recovery) => this.startRunner(unitId, recovery.work, recovery),
      rerun: (unitId, worktype) => this.onAssign(unitId, worktype, true),
    });
    this.supervisor.ensure();
    await this.warm.start();
    await this.disk.start();
    this.lifetime.start();
    /** When the link was lost, or the first connect of this streak failed: the reconnect delay grows with it. */
    let downSince: number | null = null;
    while (!this.stopped) {
      let failure: ControlFailure | null = null;
      const url = linkUrl(this.opts, "/connect", { node: this.opts.nodeId });
      try {
        this.link = await openLink(
          url,
          this.token,
          { onText: (text) => this.onText(text), onBinary: () => log.warn("control:unexpected-binary") },
          this.pingIntervalMs,
          this.opts.dispatcher,
        );
        downSince = null;
        this.helloRefusal = null;
        this.welcomed = false;
        this.sendHello();
        const code = await this.link.closed;
        if (this.helloRefusal) failure = { kind: "refused", error: this.helloRefusal };
        else if (!this.stopped && !this.switchingToCredential) log.warn("control:disconnected", { code });
      } catch (error) {
        failure =
          error instanceof SilentPeer
            ? { kind: "unreachable", error: error.message }
            : await probeHandshake(url, this.token);
      }
      this.link = null;
      downSince ??= Date.now();
      if (this.switchingToCredential) {
        // Straight back with the credential: while it is unused the node id could be joined again.
        this.switchingToCredential = false;
        continue;
      }
      if (this.stopped) break;
      const delay = reconnectDelay(Date.now() - downSince, CONTROL_RECONNECT);
      if (failure) await this.judge(failure, delay);
      await sleep(delay);
    }
  }

  /** Logs why the link failed and when it is tried again, or throws when trying again cannot help. */
  private async judge(failure: ControlFailure, delay: number): Promise<void> {
    const verdict = judgeFailure(failure, {
      ...this.scope,
      usingCredential: this.token !== this.opts.token,
      credentialFile: credentialPath(this.opts.workDir),
      credentialFor: await credentialBrokerElsewhere(this.opts.workDir, this.scope),
    });
    if (verdict.action === "stop") throw new AgentRefused(verdict.line);
    const event = failure.kind === "unreachable" ? "control:broker-unreachable" : "control:connect-failed";
    const message = `${verdict.reason}, retrying in ${(delay / 1000).toFixed(1)} s`;
    this.opts.log.warn(event, {
      message,
      retryInMs: delay,
      ...(failure.kind === "unreachable" ? { error: failure.error } : {}),
    });
  }

  /** Closes the control link; units already running finish and report first. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.supervisor.stop();
    const warmGone = this.warm.stop();
    this.disk.stop();
    this.lifetime.stop();
    this.link?.close(1000, "agent stopping");
    await Promise.all([...this.runners.values()].map((r) => r.done).concat(warmGone));
  }

  /** The join token and credential: no unit's environment may hold them. */
  private get secrets(): string[] {
    return [this.opts.token, this.token];
  }

  private send(message: AgentControlMessage): void {
    this.link?.send(encode(message));
  }

  private sendHello(): void {
    const disk = this.disk.current;
    this.send(helloMessage(this.opts, [...this.runners.keys(), ...this.waiting.map((w) => w.unitId)], disk));
    this.disk.toldInHello(disk);
    // A hello undoes a leave on the broker: say it again on every new link.
    if (this.leaving) this.send({ type: "leave", reason: this.leaving });
  }

  private get held(): number {
    return this.runners.size + this.waiting.length;
  }

  /** A lifetime limit was reached: tells the broker, then stops once nothing is held. */
  private leave(reason: string): void {
    this.opts.log.info("agent:leaving", {
      reason,
      held: this.held,
      hint: "the units held finish first; then the agent exits 0",
    });
    if (this.welcomed) this.send({ type: "leave", reason });
    if (this.held === 0) void this.stop();
  }

  private onText(text: string): void {
    const decoded = decodeBrokerControl(text);
    if (!decoded.ok) {
      this.opts.log.warn("control:bad-message", { ...decoded.error });
      return;
    }
    const msg = decoded.value;
    switch (msg.type) {
      case "welcome":
        this.welcomed = true;
        if (msg.credential) void this.adoptCredential(msg.credential);
        this.pingIntervalMs = msg.pingIntervalMs;
        this.link?.setPingInterval(msg.pingIntervalMs);
        this.opts.log.info("control:connected", { node: msg.nodeId, mesh: this.opts.mesh });
        return;
      case "assign":
        return this.onAssign(msg.unitId, msg.worktype, false, msg.start);
      case "probe":
        // A health check from the broker (health.ts): run the checks, answer with the agent's clock.
        void answerProbe(msg.id, this.opts).then((answer) => this.send(answer));
        return;
      case "error":
        // Before the welcome, an error is the broker refusing the hello; it closes the link next.
        if (!this.welcomed) this.helloRefusal = msg.error;
        this.opts.log.warn("control:broker-error", { ...msg.error });
        return;
    }
  }

  /**
   * `fromSpool`: taken up again after a restart, so not counted against --max-units. `start`: the
   * payload came inline, so the unit may start before its data socket is attached (runner.ts).
   */
  private onAssign(unitId: string, worktype: string, fromSpool = false, start?: InlineStart): void {
    if (this.runners.has(unitId) || this.waiting.some((w) => w.unitId === unitId)) return;
    // Sent before the broker heard this agent is leaving: back to the queue, for another node.
    if (this.leaving)
      return this.reject(unitId, { code: "node_leaving", message: `this agent is leaving: ${this.leaving}` });
    // Sampled at each assignment too, so that a crossing of --min-free (the last unit's output
    // filling the disk) reaches the broker before its next dispatch rather than up to 5 s later.
    void this.disk.check();
    const work = this.opts.workCommands.find((w) => w.worktype === worktype);
    if (!work)
      return this.reject(unitId, { code: "unknown_worktype", message: `this node has no work type ${worktype}` });
    if (!fromSpool) this.lifetime.took();
    if (this.runners.size >= this.opts.capacity) {
      // The broker frees a slot when a unit ends, which can reach us before this agent has
      // finished closing that unit: hold the assignment until the slot is free here too.
      // Without its inline start: by the time a slot frees the unit may have been canceled, which
      // only its data socket would tell.
      this.waiting.push({ unitId, work });
      this.lifetime.check();
      return;
    }
    this.startRunner(unitId, work, undefined, start);
    this.lifetime.check();
  }

  private startRunner(
    unitId: string,
    work: WorkCommand,
    resumed?: Extract<Recovery, { action: "report" | "adopt" }>,
    inline?: InlineStart,
  ): void {
    const runner = new UnitRunner({
      unitId,
      workCommand: work,
      dataUrl: linkUrl(this.opts, `/units/${unitId}/data`, { node: this.opts.nodeId }),
      token: () => this.token,
      secrets: () => this.secrets,
      nodeId: this.opts.nodeId,
      unitDir: join(this.opts.workDir, "units", unitId),
      cancelGraceMs: this.opts.cancelGraceMs,
      pingIntervalMs: this.pingIntervalMs,
      verifier: this.opts.verifier,
      supervisor: this.supervisor,
      log: this.opts.log,
      dispatcher: this.opts.dispatcher,
      ...(resumed ? { resumed } : {}),
      ...(inline ? { inline } : {}),
      // An inline start has its payload whole already: it starts cold, now, as it always did.
      ...(resumed || inline ? {} : { warm: (line: CommandLine) => this.warm.take(work, line) }),
    });
    this.runners.set(unitId, runner);
    this.opts.log.info("unit:assigned", { unit: unitId, worktype: work.worktype, ...(inline ? { inline: true } : {}) });
    runner
      .run()
      .catch((error) => {
        this.opts.log.error("unit:runner-crashed", { unit: unitId, error: errorMessage(error) });
        // Left unsaid, the broker would keep the unit on this node for ever.
        this.reject(unitId, { code: "internal", message: `agent error: ${errorMessage(error)}` });
      })
      .finally(() => {
        this.runners.delete(unitId);
        const next = this.waiting.shift();
        if (next) this.startRunner(next.unitId, next.work);
        if (this.held === 0) {
          this.lifetime.idle();
          if (this.leaving) void this.stop();
        }
      });
  }

  private reject(unitId: string, error: ErrorBody): void {
    this.opts.log.warn("unit:reject", { unit: unitId, ...error });
    this.send({ type: "reject", unit: unitId, error });
  }

  /**
   * Saves the credential, then reconnects with it at once: the broker treats a credential as taken
   * only once it has been used, so the window in which another join could take the id stays short.
   */
  private async adoptCredential(credential: string): Promise<void> {
    this.token = credential;
    try {
      await saveCredential(this.opts.workDir, this.scope, credential);
      this.opts.log.info("control:joined", { node: this.opts.nodeId, credential: "saved" });
    } catch (error) {
      // Still usable for this run; the next start joins again (the broker re-issues an unused one).
      this.opts.log.error("control:credential-not-saved", { error: errorMessage(error) });
    }
    this.switchingToCredential = true;
    this.link?.close(1000, "reconnecting with the node credential");
  }
}
