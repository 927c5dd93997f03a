/**
 * A unit's artifacts as a tar file: what `ansible-runner process` would have written for it.
 *
 * For an ansible-runner unit: the entries of the worker's artifacts zip (rc, status, stdout,
 * stderr, command, fact_cache/…), read in place from the base64 in the results (zip.ts), plus
 * `job_events/<counter>-<uuid>.json` for each runner event, byte for byte its line in the
 * results. Without a zip (canceled early, cut short), `status` is the last status line and `rc`
 * the unit's exit code. For any other command: `stdout` is the raw results, with `rc` and
 * `status` from the unit. Everything is read from storage only as the reader pulls the tar.
 */
import type { UnitState } from "../../shared/states.js";
import type { UnitRecord } from "../../shared/unit.js";
import { log, logError } from "../log.js";
import type { EventRow, ParseState } from "./events.js";
import { redactEnv } from "./redact.js";
import { type TarFile, tarStream } from "./tar.js";
import {
  type ByteSource,
  type ZipEntry,
  ZipError,
  base64Source,
  entryBytes,
  entryChunks,
  readZipEntries,
} from "./zip.js";

/** What building the tar needs from the Unit object's store (store.ts). */
export interface ArtifactStore {
  readAt(stream: "results", offset: number): Uint8Array | null;
  /** Reads ranges, keeping the chunk it last fetched (event lines lie many to a chunk). */
  rangeReader(stream: "results"): (offset: number, length: number) => Uint8Array;
  eventsAfter(after: number, limit: number): EventRow[];
}

/** What building the tar needs from the unit's document. */
export type ArtifactUnit = Pick<UnitRecord, "id" | "state" | "exitCode" | "finishedAt" | "stdoutSize"> & {
  parse: ParseState | null;
};

/** The tar as the HTTP answer: a download named after the unit. */
export function artifactsResponse(store: ArtifactStore, doc: ArtifactUnit, redact: boolean): Response {
  const body = tarStream(artifactFiles(store, doc, redact), (error) =>
    logError("unit:artifacts-failed", error, { unit: doc.id }),
  );
  return new Response(body, {
    headers: {
      "content-type": "application/x-tar",
      "content-disposition": `attachment; filename="${doc.id}-artifacts.tar"`,
      "x-unit-state": doc.state,
    },
  });
}

/** ansible-runner's words for the unit's state, as its `status` file holds them. */
export const RUNNER_STATUS: Record<UnitState, string> = {
  Pending: "unstarted",
  Running: "running",
  Succeeded: "successful",
  Failed: "failed",
  Canceled: "canceled",
  Released: "canceled",
};

const EVENT_PAGE = 500;
/** Compressed bytes inflated at a time: deflate expands at most ~1000×, so a step makes ≤ 8 MiB. */
const INFLATE_STEP = 8 * 1024;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * The tar's files, in order, produced lazily. The snapshot is the results as they stand now: on
 * a running unit, events that arrive while the tar streams are left out. `redact`: the reader may
 * not see secrets, so the environment in `command` is masked as in the events.
 */
export function* artifactFiles(
  store: ArtifactStore,
  doc: ArtifactUnit,
  redact: boolean,
  now = new Date(),
): Generator<TarFile> {
  const mtime = doc.finishedAt ? new Date(doc.finishedAt) : now;
  const end = doc.stdoutSize;
  yield directory("artifacts/", 0o755, mtime);
  if (doc.parse?.mode !== "runner") {
    yield file("artifacts/stdout", 0o600, mtime, end, () => resultsPieces(store, end));
    yield* outcome(doc, RUNNER_STATUS[doc.state], mtime);
    return;
  }
  const zip = openZip(store, doc);
  let eventsDir = false;
  for (const entry of zip?.entries ?? []) {
    const name = `artifacts/${entry.name}`;
    if (!safeName(entry.name)) {
      log("unit:artifacts-skipped", { unit: doc.id, entry: entry.name });
    } else if (entry.directory) {
      eventsDir ||= entry.name === "job_events/";
      yield directory(name, entry.mode & 0o7777 || 0o755, entry.mtime);
    } else if (entry.name === "command" && redact) {
      const masked = maskCommand(entryBytes(zip!.source, entry));
      if (masked) yield file(name, entry.mode & 0o7777 || 0o600, entry.mtime, masked.byteLength, () => [masked]);
    } else {
      yield file(name, entry.mode & 0o7777 || 0o600, entry.mtime, entry.size, () =>
        entryChunks(zip!.source, entry, INFLATE_STEP),
      );
    }
  }
  if (!eventsDir) yield directory("artifacts/job_events/", 0o700, mtime);
  let lastStatus: string | null = null;
  const read = store.rangeReader("results");
  for (const row of eventRows(store, end)) {
    const meta = JSON.parse(row.meta) as { counter?: number; uuid?: string; status?: string };
    if (row.kind === "status" && meta.status) lastStatus = meta.status;
    const name = row.kind === "event" ? jobEventName(meta) : null;
    if (name)
      yield file(`artifacts/job_events/${name}`, 0o600, new Date(row.at), row.len, () => [
        exactRange(read, row.off, row.len),
      ]);
  }
  if (!zip) yield* outcome(doc, lastStatus, mtime);
}

/** The stored events whose lines lie before `end`, a page at a time. */
function* eventRows(store: ArtifactStore, end: number): Generator<EventRow> {
  for (let after = 0; ; ) {
    const rows = store.eventsAfter(after, EVENT_PAGE);
    for (const row of rows) {
      if (row.off >= end) return;
      yield row;
    }
    if (rows.length < EVENT_PAGE) return;
    after = rows.at(-1)!.seq;
  }
}

/** `<counter>-<uuid>.json`, as ansible-runner process names it; null for lines it would not file. */
export function jobEventName(meta: { counter?: number; uuid?: string }): string | null {
  if (typeof meta.counter !== "number" || typeof meta.uuid !== "string") return null;
  const name = `${meta.counter}-${meta.uuid}.json`;
  return safeName(name) && !name.includes("/") ? name : null;
}

/** A relative path that stays inside the artifacts directory when extracted. */
export function safeName(name: string): boolean {
  return (
    name !== "" &&
    !name.startsWith("/") &&
    !name.includes("\\") &&
    // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters have no place in an archived name.
    !/[\x00-\x1f]/.test(name) &&
    !name.split("/").some((p) => p === "..")
  );
}

/** `command` with the environment's values masked; null if it is not the JSON object expected. */
export function maskCommand(bytes: Uint8Array): Uint8Array | null {
  try {
    const value: unknown = JSON.parse(decoder.decode(bytes));
    if (value === null || typeof value !== "object" || Array.isArray(value)) return null;
    return encoder.encode(JSON.stringify(redactEnv(value as Record<string, unknown>)));
  } catch {
    return null;
  }
}

/** The worker's zip, if the results hold all of it and it reads as one. */
function openZip(store: ArtifactStore, doc: ArtifactUnit): { source: ByteSource; entries: ZipEntry[] } | null {
  const zip = doc.parse?.zip;
  if (!zip || zip.offset + zip.length > doc.stdoutSize) return null;
  const read = store.rangeReader("results");
  try {
    const source = base64Source(zip.length, (offset, length) => exactRange(read, zip.offset + offset, length));
    return { source, entries: readZipEntries(source) };
  } catch (error) {
    if (!(error instanceof ZipError)) throw error;
    log("unit:artifacts-no-zip", { unit: doc.id, reason: error.message });
    return null;
  }
}

function* outcome(doc: ArtifactUnit, status: string | null, mtime: Date): Generator<TarFile> {
  if (doc.exitCode !== null) yield text("artifacts/rc", String(doc.exitCode), mtime);
  if (status !== null) yield text("artifacts/status", status, mtime);
}

function* resultsPieces(store: ArtifactStore, end: number): Generator<Uint8Array> {
  for (let at = 0; at < end; ) {
    const chunk = store.readAt("results", at);
    if (!chunk) throw new Error(`the results end at ${at}, before ${end}: the unit was released`);
    const piece = chunk.subarray(0, end - at);
    at += piece.byteLength;
    yield piece;
  }
}

function exactRange(read: (offset: number, length: number) => Uint8Array, offset: number, length: number): Uint8Array {
  const bytes = read(offset, length);
  if (bytes.byteLength !== length) throw new Error(`the results end before ${offset + length}: the unit was released`);
  return bytes;
}

const directory = (name: string, mode: number, mtime: Date): TarFile => ({
  name,
  type: "directory",
  mode,
  mtime,
  size: 0,
  body: () => [],
});

const file = (name: string, mode: number, mtime: Date, size: number, body: () => Iterable<Uint8Array>): TarFile => ({
  name,
  type: "file",
  mode,
  mtime,
  size,
  body,
});

function text(name: string, content: string, mtime: Date): TarFile {
  const bytes = encoder.encode(content);
  return file(name, 0o600, mtime, bytes.byteLength, () => [bytes]);
}
