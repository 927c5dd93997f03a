import { concat } from "./fixtures/concat.js";
import { describe, expect, it } from "vitest";
import { type PayloadSink, STREAM_FLUSH_BYTES, STREAM_FLUSH_MS, ingestPayload } from "../../broker/unit/payload.js";
import { CHUNK_BYTES } from "../../shared/frames.js";
import { END_PIECE, encodePiece } from "../../shared/payload-framing.js";

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

  describe("framed (length unknown, shared/payload-framing.ts)", () => {
    const framed = (...pieces: Uint8Array[]) => [...pieces.map(encodePiece), END_PIECE];

    it("stores bytes that wait STREAM_FLUSH_MS, or STREAM_FLUSH_BYTES at once, and reports the size so far", async () => {
      const { store, chunks } = sink();
      const sizes: number[] = [];
      const body = concat(framed(bytes(100), bytes(STREAM_FLUSH_BYTES, 0x62)));
      // A first read with 56 payload bytes, a pause longer than STREAM_FLUSH_MS, then the rest.
      const reads = [body.subarray(0, 60), body.subarray(60)];
      const stream = new ReadableStream<Uint8Array>({
        async pull(controller) {
          const next = reads.shift();
          if (!next) return controller.close();
          if (reads.length === 0) await new Promise((resolve) => setTimeout(resolve, STREAM_FLUSH_MS * 3));
          controller.enqueue(next);
        },
      });
      const result = await ingestPayload(store, { body: stream, headers: new Headers() }, 1 << 20, {
        framed: true,
        onProgress: (size) => sizes.push(size),
      });
      const total = 100 + STREAM_FLUSH_BYTES;
      expect(result).toEqual({ ok: true, value: total });
      expect(sizes).toEqual([56, total]);
      expect(chunks.map((c) => [c.offset, c.data.byteLength])).toEqual([
        [0, 56],
        [56, total - 56],
      ]);
    });

    it.each([
      ["without its end marker", [encodePiece(bytes(10))], "payload_incomplete"],
      ["cut inside a piece", [encodePiece(bytes(10)).subarray(0, 8)], "payload_incomplete"],
      ["growing past the limit", framed(bytes(600), bytes(600)), "payload_too_large"],
      ["with bytes after its end marker", [...framed(bytes(5)), bytes(1)], "bad_request"],
    ])("refuses a framed body %s", async (_name, parts, code) => {
      const result = await ingestPayload(sink().store, upload(parts, null), 1000, { framed: true });
      expect(result).toMatchObject({ ok: false, error: { code } });
    });

    it("ignores a Content-Length when framed: the end marker decides", async () => {
      const result = await ingestPayload(sink().store, upload(framed(bytes(10)), 3), 1000, { framed: true });
      expect(result).toEqual({ ok: true, value: 10 });
    });

    it("a framed body that breaks after its end marker is whole", async () => {
      const result = await ingestPayload(sink().store, upload(framed(bytes(10)), null, "reset after the end"), 1000, {
        framed: true,
      });
      expect(result).toEqual({ ok: true, value: 10 });
    });

    it("stores nothing more once its unit ended meanwhile (the rest is read, not stored), and fails a stalled upload", async () => {
      let reads = 0;
      const { store, chunks } = sink();
      const stopped = await ingestPayload(store, upload(framed(bytes(10), bytes(10)), null), 1000, {
        framed: true,
        stop: () => (++reads >= 2 ? "the unit was Canceled while its payload was arriving" : null),
      });
      expect(chunks.reduce((n, c) => n + c.data.byteLength, 0)).toBeLessThanOrEqual(10);
      expect(stopped).toEqual({
        ok: false,
        error: { code: "illegal_transition", message: "the unit was Canceled while its payload was arriving" },
      });
      const silent = new ReadableStream<Uint8Array>({
        start(controller) {
          controller.enqueue(encodePiece(bytes(3)));
        },
      });
      const stalled = await ingestPayload(sink().store, { body: silent, headers: new Headers() }, 1000, {
        framed: true,
        idleMs: 50,
      });
      expect(stalled).toEqual({
        ok: false,
        error: { code: "payload_incomplete", message: "the upload stalled: no payload bytes for 0 s after 3 bytes" },
      });
    });
  });
});
