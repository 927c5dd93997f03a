/**
 * What a Unit object's single alarm is for, as pure functions of its status document: expiring a
 * Pending unit past its TTL, reaping a finished unit's data after the retention, forgetting a
 * Released tombstone after its own retention, retrying a Mesh notification that failed, and
 * waking the object now and then while a framed payload streams in (`watch`: if the broker
 * restarted meanwhile, the object that wakes finds the upload gone and fails the unit, see
 * UnitObject's constructor; a unit nobody reads would otherwise wait for ever). Each unit carries
 * its own alarm, so nothing ever scans all units.
 */
import { formatDuration } from "../../shared/duration.js";
import type { UnitState } from "../../shared/states.js";

export interface ScheduleDoc {
  state: UnitState;
  expiresAt: string | null;
  finishedAt: string | null;
  releasedAt: string | null;
  meshSynced: boolean;
  /** A framed payload, and whether it is whole (UnitDoc.payloadFramed); absent: not framed. */
  payloadFramed?: boolean;
  payloadComplete?: boolean;
}

export interface Retention {
  unitRetentionMs: number;
  tombstoneRetentionMs: number;
}

export type UnitDue = "expire" | "reap" | "purge" | "sync" | "watch";

/** How soon a failed notification to the Mesh object is tried again. */
export const SYNC_RETRY_MS = 5_000;
/** How often the object wakes while a framed payload streams in. */
export const UPLOAD_WATCH_MS = 30_000;

const ACTIVE: readonly UnitState[] = ["Pending", "Running"];

function deadlines(doc: ScheduleDoc, retention: Retention, now: number): [UnitDue, number][] {
  const due: [UnitDue, number][] = [];
  if (doc.state === "Pending" && doc.expiresAt) due.push(["expire", Date.parse(doc.expiresAt)]);
  if ((doc.state === "Succeeded" || doc.state === "Failed" || doc.state === "Canceled") && doc.finishedAt) {
    due.push(["reap", Date.parse(doc.finishedAt) + retention.unitRetentionMs]);
  }
  if (doc.state === "Released") {
    due.push([
      "purge",
      Date.parse(doc.releasedAt ?? doc.finishedAt ?? new Date(now).toISOString()) + retention.tombstoneRetentionMs,
    ]);
  }
  if (!doc.meshSynced) due.push(["sync", now + SYNC_RETRY_MS]);
  if (doc.payloadFramed && !doc.payloadComplete && ACTIVE.includes(doc.state))
    due.push(["watch", now + UPLOAD_WATCH_MS]);
  return due;
}

/** The actions due at `now`, in the order they must run (sync first: it only reports). */
export function dueActions(doc: ScheduleDoc, retention: Retention, now: number): UnitDue[] {
  return (
    deadlines(doc, retention, now)
      // sync is added below whatever its time; watch is never due itself (waking is all it does).
      .filter(([action, at]) => action !== "sync" && action !== "watch" && at <= now)
      .map(([action]) => action)
      .concat(doc.meshSynced ? [] : ["sync"])
      .sort((a, b) => (a === "sync" ? -1 : b === "sync" ? 1 : 0))
  );
}

/** When the alarm should next fire, or null when nothing is pending. */
export function nextAlarm(doc: ScheduleDoc, retention: Retention, now: number): number | null {
  const times = deadlines(doc, retention, now).map(([, at]) => at);
  return times.length === 0 ? null : Math.max(now, Math.min(...times));
}

/**
 * A Pending unit past its TTL. The alarm expires it, but the runtime drops an alarm after a few
 * failed runs (guard.ts): placing and starting check this too, so a lost alarm never lets a unit
 * start after its time to live.
 */
export function isExpired(doc: ScheduleDoc, now: number): boolean {
  return doc.state === "Pending" && doc.expiresAt !== null && Date.parse(doc.expiresAt) <= now;
}

/** The detail of a unit that expired, naming its time to live. */
export function expiredDetail(doc: { expiresAt: string | null; createdAt: string }): string {
  return `expired: not started within its time to live (${formatDuration(Date.parse(doc.expiresAt!) - Date.parse(doc.createdAt))})`;
}
