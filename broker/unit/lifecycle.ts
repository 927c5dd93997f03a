/**
 * Carries out what the Unit object decided: state changes (the one `move`), notes that keep the
 * state (`annotate`), telling the Mesh object, setting the one alarm and doing what it found due,
 * and forgetting the unit after its tombstone retention. The decisions themselves are pure
 * (logic.ts, schedule.ts); this is the storage, socket and RPC side of them.
 */
import { formatDuration } from "../../shared/duration.js";
import type { BrokerDataMessage } from "../../shared/protocol.js";
import { STATE_NUMBER, type UnitState, isTerminal, transition } from "../../shared/states.js";
import type { BrokerConfig } from "../../shared/broker-config.js";
import { PageCache, Waiters } from "../feed.js";
import { log, logError } from "../log.js";
import { sendMessage } from "../socket.js";
import { meshObject } from "../stubs.js";
import { AGENT_TAG, type UnitHost, isAttached } from "./agent-link.js";
import { finishEvents } from "./event-log.js";
import { PendingResults } from "./results-batch.js";
import { SYNC_RETRY_MS, dueActions, expiredDetail, nextAlarm } from "./schedule.js";
import { type UnitDoc, type UnitStore, payloadStreaming } from "./store.js";

export class UnitLifecycle implements UnitHost {
  /** Followers (results, events) waiting for the next write or state change. */
  readonly waiters = new Waiters();
  /** Event pages rendered for followers; dropped with the results they were read from. */
  readonly pages = new PageCache();
  /** Results frames taken in, written and acknowledged in batches (results-batch.ts). */
  readonly pending = new PendingResults();

  constructor(
    readonly ctx: DurableObjectState,
    readonly store: UnitStore,
    private readonly env: Env,
    private readonly config: BrokerConfig,
  ) {}

  /** The one place unit state changes: checked against the transition table, saved, announced. */
  async move(doc: UnitDoc, to: UnitState, detail: string, extra: Partial<UnitDoc> = {}): Promise<void> {
    const allowed = transition(doc.state, to);
    if (!allowed.ok) {
      log("unit:illegal-transition", { unit: doc.id, from: doc.state, to });
      return;
    }
    const now = new Date().toISOString();
    const next: UnitDoc = { ...doc, ...extra, state: to, stateNumber: STATE_NUMBER[to], detail };
    if (isTerminal(to) && !next.finishedAt) next.finishedAt = now;
    if (isTerminal(to) && next.resultsAtVerdict === null) next.resultsAtVerdict = next.stdoutSize;
    // An ended unit runs nowhere: its node's reachability no longer describes it.
    if (isTerminal(to)) next.nodeUnreachableSince = null;
    if (to === "Released") next.releasedAt = now;
    this.store.save(next);
    // The last unfinished line becomes an event now that no byte will follow it.
    if (isTerminal(to) && to !== "Released") finishEvents(this.store);
    this.wake();
    if (isTerminal(to)) this.sendAgent({ type: "closed", state: to, exitRecorded: next.exitReported });
    await this.notifyMesh(next);
    await this.schedule();
  }

  /** A change that keeps the state (detail, node, late exit): saved, shown to followers and the Mesh. */
  async annotate(doc: UnitDoc): Promise<void> {
    this.store.save(doc);
    this.wake();
    await this.notifyMesh(doc);
  }

  /** Drops payload and results (release, retention) and the pages rendered from them, then moves to Released. */
  async release(doc: UnitDoc, detail: string): Promise<void> {
    this.store.deleteStreams();
    this.pages.clear();
    await this.move(doc, "Released", detail);
  }

  /**
   * Tells the Mesh object the unit's state. A failure (the Mesh object restarting, say) is not
   * lost: the unit remembers it is unsynced and its alarm sends the then-current state again.
   */
  async notifyMesh(doc: UnitDoc): Promise<void> {
    let synced = true;
    try {
      await meshObject(this.env, doc.mesh).unitChanged({
        id: doc.id,
        state: doc.state,
        detail: doc.detail,
        ready: doc.payloadComplete,
        streaming: payloadStreaming(doc),
        resultsBytes: doc.stdoutSize,
      });
    } catch (error) {
      synced = false;
      logError("unit:notify-mesh-failed", error, { unit: doc.id });
    }
    const current = this.store.doc();
    // Another move may have run during the RPC: what was sent is in sync only if it is still current.
    if (
      synced &&
      current &&
      (current.state !== doc.state ||
        current.detail !== doc.detail ||
        current.payloadComplete !== doc.payloadComplete ||
        current.payloadFramed !== doc.payloadFramed)
    )
      return;
    if (current && current.meshSynced !== synced) {
      this.store.save({ ...current, meshSynced: synced });
      await this.schedule();
    }
  }

  /** Sets the one alarm to the earliest thing due (TTL, retention, notification retry). */
  async schedule(): Promise<void> {
    const doc = this.store.doc();
    const at = doc ? nextAlarm(doc, this.config, Date.now()) : null;
    const current = await this.ctx.storage.getAlarm();
    if (at === null) {
      if (current !== null) await this.ctx.storage.deleteAlarm();
    } else if (current !== at) {
      await this.ctx.storage.setAlarm(at);
    }
  }

  /** The alarm: does what is due (schedule.ts), then sets the alarm for what comes next. */
  async runDue(): Promise<void> {
    try {
      await this.doDue();
    } catch (error) {
      // The runtime retries a failed alarm only a few times, then never runs it again (guard.ts;
      // seen on workerd: not even an alarm set later from another entry point ran before a
      // restart). Set our own retry first, so expiry and retention are never given up; the alarm
      // set here replaces the runtime's retry. If storage itself fails this throws too, and the
      // runtime's retries are what is left.
      await this.ctx.storage.setAlarm(Date.now() + SYNC_RETRY_MS);
      throw error;
    }
  }

  private async doDue(): Promise<void> {
    const start = this.store.doc();
    if (!start) return;
    for (const action of dueActions(start, this.config, Date.now())) {
      const doc = this.store.doc()!;
      switch (action) {
        case "sync":
          await this.notifyMesh(doc);
          break;
        case "expire":
          await this.move(doc, "Failed", expiredDetail(doc));
          break;
        case "reap":
          await this.release(doc, `released after the ${formatDuration(this.config.unitRetentionMs)} retention`);
          break;
        case "purge":
          return this.purge(doc);
      }
    }
    await this.schedule();
  }

  /** The tombstone's retention is over: the Mesh forgets the unit, then so does this object. */
  private async purge(doc: UnitDoc): Promise<void> {
    try {
      await meshObject(this.env, doc.mesh).unitPurged(doc.id);
    } catch (error) {
      // The runtime gives up on an alarm after a few failures: keep our own retry going instead.
      logError("unit:purge-failed", error, { unit: doc.id });
      await this.ctx.storage.setAlarm(Date.now() + SYNC_RETRY_MS);
      return;
    }
    for (const ws of this.ctx.getWebSockets()) ws.close(4410, "unit forgotten");
    this.store.forget();
    await this.ctx.storage.deleteAlarm();
    log("unit:purged", { unit: doc.id });
  }

  wake(): void {
    this.waiters.wake();
  }

  /** To the agent attached for the unit, if any. */
  sendAgent(message: BrokerDataMessage): void {
    for (const ws of this.ctx.getWebSockets(AGENT_TAG)) if (isAttached(ws)) sendMessage(ws, message);
  }
}
