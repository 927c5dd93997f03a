/**
 * Receiving a unit's payload: the submit's body, streamed from the Worker over RPC into numbered
 * chunks (payload.ts). One upload at a time per unit: a retried submit (same Idempotency-Key)
 * must not interleave its bytes with an upload still streaming in.
 *
 * A framed upload (length unknown, shared/payload-framing.ts) makes the unit placeable at once on a
 * node whose work type takes a streaming payload: that node starts the command and pulls the bytes
 * as they come (agent-link.ts feedAgents). If such an upload breaks, the unit fails, running or
 * not; the command it started reads a cut stream, which such a work type refuses before doing
 * anything (ansible-runner worker runs nothing before its `eof` record).
 */
import { type Result, fail, ok } from "../../shared/errors.js";
import { isTerminal } from "../../shared/states.js";
import type { UnitRecord } from "../../shared/unit.js";
import { feedAgents } from "./agent-link.js";
import type { UnitLifecycle } from "./lifecycle.js";
import { CHUNK_BYTES } from "../../shared/frames.js";
import { type PayloadSink, ingestPayload } from "./payload.js";
import { type UnitDoc, publicRecord } from "./store.js";

/** How often a streaming payload's size is written to the unit's record while it grows. */
const SIZE_SAVE_MS = 1_000;

export interface PayloadUpload {
  /** The declared Content-Length: the body must be exactly this long. Null: the body is framed. */
  length: number | null;
  /**
   * A POST with an Idempotency-Key that already made this unit. If the first upload got through,
   * the retry just answers with the unit; if it died half-way (and is not still streaming here),
   * the retry's body replaces the partial payload.
   */
  retry: boolean;
}

export class PayloadReceiver {
  /** A payload upload is streaming into this instance. */
  private uploading = false;
  /** When a streaming payload's size was last saved (grew). */
  private savedAt = 0;

  constructor(
    private readonly life: UnitLifecycle,
    private readonly maxBytes: number,
  ) {}

  /** `created`: this upload stored the payload (201); else a retry found it stored already (200). */
  async receive(
    body: ReadableStream<Uint8Array> | null,
    upload: PayloadUpload,
  ): Promise<Result<{ record: UnitRecord; created: boolean }>> {
    const { store } = this.life;
    const doc = store.doc();
    // A body left unread would break the client's connection: every early answer cancels it.
    if (!doc) return refused(body, fail("unknown_unit", "no such unit"));
    if (doc.payloadComplete || doc.state !== "Pending" || doc.node !== null) {
      // A framed upload that broke after the unit was placed cannot be replaced: its unit may have
      // started on the first bytes (and has failed, or will).
      if (upload.retry) return refused(body, ok({ record: publicRecord(doc), created: false }));
      return refused(body, fail("illegal_transition", "the payload was already received"));
    }
    if (this.uploading)
      return refused(
        body,
        fail("upload_in_progress", "the unit's payload is still being uploaded by an earlier request"),
      );
    this.uploading = true;
    const framed = upload.length === null;
    let result: Result<number>;
    try {
      store.deleteStream("payload");
      if (framed) {
        const streaming: UnitDoc = { ...doc, payloadFramed: true, payloadSize: 0, detail: "waiting for a node" };
        store.save(streaming);
        // Woken now and then while it streams: after a broker restart that cut it, the unit fails.
        await this.life.schedule();
        await this.life.notifyMesh(streaming);
      }
      result = await ingestPayload(
        store,
        { body, headers: new Headers(framed ? {} : { "content-length": String(upload.length) }) },
        this.maxBytes,
        { framed, onProgress: (size) => this.grew(size), stop: () => this.endedMeanwhile() },
      );
    } finally {
      this.uploading = false;
    }
    return this.finish(result);
  }

  /**
   * A streaming payload grew: send attached agents what they pulled, and record the size now and
   * then (an `attached` shows it; the bytes themselves go by `size`, so a stale record delays nothing).
   */
  private grew(size: number): void {
    const { store } = this.life;
    const doc = store.doc();
    if (!doc || isTerminal(doc.state)) return;
    const now = Date.now();
    if (now - this.savedAt >= SIZE_SAVE_MS) {
      store.save({ ...doc, payloadSize: size });
      this.savedAt = now;
    }
    feedAgents(this.life, size, false);
  }

  /** Why a framed upload should stop now: its unit ended (canceled, expired, failed) before the payload did. */
  private endedMeanwhile(): string | null {
    const doc = this.life.store.doc();
    if (!doc || !isTerminal(doc.state) || doc.exitReported) return null;
    return `the unit was ${doc.state} while its payload was arriving`;
  }

  private async finish(result: Result<number>): Promise<Result<{ record: UnitRecord; created: boolean }>> {
    const { store } = this.life;
    // Cancel or release may have run while the body was arriving: never resurrect the unit.
    const current = store.doc()!;
    if (isTerminal(current.state)) {
      if (current.state === "Released") store.deleteStreams();
      // A streaming unit may have run and ended on its whole payload before the upload's last read;
      // one canceled, expired or failed by the broker meanwhile is refused, as any upload is.
      if (result.ok && current.payloadFramed && current.exitReported && current.state !== "Released") {
        store.save({ ...current, payloadComplete: true, payloadSize: result.value });
        return ok({ record: publicRecord(store.doc()!), created: true });
      }
      return fail("illegal_transition", `the unit was ${current.state} while its payload was arriving`);
    }
    if (!result.ok) {
      if (current.state === "Pending" && current.node === null) store.deleteStreams();
      else store.deleteStream("payload");
      await this.life.move(current, "Failed", `${result.error.code}: ${result.error.message}`);
      return result;
    }
    const ready = readyDoc(current, result.value);
    store.save(ready);
    if (ready.payloadFramed) feedAgents(this.life, result.value, true);
    await this.life.notifyMesh(ready);
    return ok({ record: publicRecord(store.doc()!), created: true });
  }
}

/** A unit whose payload of `size` bytes is stored: it waits for a node, unless placed already (a streamed upload). */
const readyDoc = (doc: UnitDoc, size: number): UnitDoc => ({
  ...doc,
  payloadSize: size,
  payloadComplete: true,
  detail: doc.node === null ? "waiting for a node" : doc.detail,
});

/** A new unit with its whole payload, given at once (UnitObject.init): the chunks stored, the document to save. */
export function withPayload(store: PayloadSink, doc: UnitDoc, payload: Uint8Array): UnitDoc {
  for (let offset = 0; offset < payload.byteLength; offset += CHUNK_BYTES)
    store.append("payload", offset, payload.subarray(offset, offset + CHUNK_BYTES));
  return readyDoc(doc, payload.byteLength);
}

async function refused<T>(body: ReadableStream<Uint8Array> | null, answer: Result<T>): Promise<Result<T>> {
  await body?.cancel().catch(() => {});
  return answer;
}
