import { describe, expect, it } from "vitest";
import { type PayloadSink, ingestPayload } from "../../broker/unit/payload.js";
import { CHUNK_BYTES } from "../../shared/frames.js";

/** The chunks ingestion stored, in order, as the Unit object's store would hold them. */
function sink() {
  const chunks: { offset: number; data: Uint8Array }[] = [];
  const store: PayloadSink = { append: (_stream, offset, data) => chunks.push({ offset, data: data.slice() }) };
  return { store, chunks };
}

/** A request whose body yields `parts` and then ends cleanly, or breaks with `error`. */
function upload(parts: Uint8Array[], declared: number | null, error?: string): Request {
  const queue = [...parts];
  // One part per pull: an error raised up front would discard the parts still queued.
  const body = new ReadableStream<Uint8Array>({
    pull(controller) {
      const part = queue.shift();
      if (part) controller.enqueue(part);
      else if (error) controller.error(new Error(error));
      else controller.close();
    },
  });
  const headers: Record<string, string> = declared === null ? {} : { "content-length": String(declared) };
  return new Request("https://unit/payload", { method: "POST", headers, body, duplex: "half" } as RequestInit);
}

const bytes = (n: number, fill = 0x61) => new Uint8Array(n).fill(fill);

describe("ingestPayload", () => {
  it("stores a body of its declared length as chunks of CHUNK_BYTES at their offsets", async () => {
    const { store, chunks } = sink();
    const result = await ingestPayload(
      store,
      upload([bytes(CHUNK_BYTES - 3), bytes(8, 0x62)], CHUNK_BYTES + 5),
      2 * CHUNK_BYTES,
    );
    expect(result).toEqual({ ok: true, value: CHUNK_BYTES + 5 });
    expect(chunks.map((c) => [c.offset, c.data.byteLength])).toEqual([
      [0, CHUNK_BYTES],
      [CHUNK_BYTES, 5],
    ]);
    expect(chunks[0]!.data.subarray(CHUNK_BYTES - 4)).toEqual(new Uint8Array([0x61, 0x62, 0x62, 0x62]));
  });

  it.each([
    [
      "a body that ends cleanly short of its Content-Length",
      upload([bytes(10)], 1000),
      { code: "payload_incomplete", message: "payload ended after 10 of 1000 declared bytes" },
    ],
    [
      "a body whose stream breaks",
      upload([bytes(10)], 1000, "connection lost"),
      { code: "payload_incomplete", message: "payload stream broke after 10 bytes (connection lost)" },
    ],
    [
      "a declared length over the limit (refused before reading)",
      upload([bytes(10)], 2000),
      { code: "payload_too_large", message: "payload of 2000 bytes exceeds the 1000-byte limit" },
    ],
    [
      "an undeclared body growing past the limit",
      upload([bytes(600), bytes(600)], null),
      { code: "payload_too_large", message: "payload exceeds the 1000-byte limit" },
    ],
  ])("refuses %s", async (_name, request, error) => {
    expect(await ingestPayload(sink().store, request, 1000)).toEqual({ ok: false, error });
  });

  it("an empty body with Content-Length 0 is a complete, empty payload", async () => {
    const { store, chunks } = sink();
    expect(await ingestPayload(store, upload([], 0), 1000)).toEqual({ ok: true, value: 0 });
    expect(chunks).toEqual([]);
  });
});
