/**
 * Receiving a unit's payload: the submit's body, streamed from the Worker over RPC into numbered
 * chunks (payload.ts). One upload at a time per unit: a retried submit (same Idempotency-Key)
 * must not interleave its bytes with an upload still streaming in.
 */
import { type Result, fail, ok } from "../../shared/errors.js";
import type { UnitRecord } from "../../shared/unit.js";
import type { UnitLifecycle } from "./lifecycle.js";
import { CHUNK_BYTES } from "../../shared/frames.js";
import { type PayloadSink, ingestPayload } from "./payload.js";
import { type UnitDoc, publicRecord } from "./store.js";

export interface PayloadUpload {
  /** The declared Content-Length: the body must be exactly this long. */
  length: number;
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
    if (doc.payloadComplete || doc.state !== "Pending") {
      if (upload.retry) return refused(body, ok({ record: publicRecord(doc), created: false }));
      return refused(body, fail("illegal_transition", "the payload was already received"));
    }
    if (this.uploading)
      return refused(
        body,
        fail("upload_in_progress", "the unit's payload is still being uploaded by an earlier request"),
      );
    this.uploading = true;
    let result: Result<number>;
    try {
      store.deleteStream("payload");
      result = await ingestPayload(
        store,
        { body, headers: new Headers({ "content-length": String(upload.length) }) },
        this.maxBytes,
      );
    } finally {
      this.uploading = false;
    }
    // Cancel or release may have run while the body was arriving: never resurrect the unit.
    const current = store.doc()!;
    if (current.state !== "Pending") {
      if (current.state === "Released") store.deleteStreams();
      return fail("illegal_transition", `the unit was ${current.state} while its payload was arriving`);
    }
    if (!result.ok) {
      store.deleteStreams();
      await this.life.move(current, "Failed", `${result.error.code}: ${result.error.message}`);
      return result;
    }
    const ready = readyDoc(current, result.value);
    store.save(ready);
    await this.life.notifyMesh(ready);
    return ok({ record: publicRecord(store.doc()!), created: true });
  }
}

/** A unit whose payload of `size` bytes is stored: it waits for a node. */
const readyDoc = (doc: UnitDoc, size: number): UnitDoc => ({
  ...doc,
  payloadSize: size,
  payloadComplete: true,
  detail: "waiting for a node",
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
