import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { isErrorCode } from "../../shared/errors.js";
import {
  CHUNK_BYTES,
  FRAME_HEADER,
  FRAME_VERSION,
  MAX_FRAME_BYTES,
  type StreamKind,
  decodeFrame,
  encodeFrame,
} from "../../shared/frames.js";

/** A frame built byte by byte, independent of encodeFrame. */
function rawFrame(version: number, kind: number, offset: bigint, data: number[] = []): Uint8Array {
  const bytes = new Uint8Array(FRAME_HEADER + data.length);
  bytes[0] = version;
  bytes[1] = kind;
  for (let i = 0; i < 8; i++) bytes[2 + i] = Number((offset >> BigInt(8 * (7 - i))) & 0xffn);
  bytes.set(data, FRAME_HEADER);
  return bytes;
}

function expectError(result: ReturnType<typeof decodeFrame>, code: string): void {
  expect(result.ok).toBe(false);
  if (!result.ok) {
    expect(result.error.code).toBe(code);
    expect(typeof result.error.message).toBe("string");
    expect(result.error.message.length).toBeGreaterThan(0);
  }
}

describe("constants", () => {
  it("header is 10 bytes, max frame is header + chunk", () => {
    expect(FRAME_HEADER).toBe(10);
    expect(MAX_FRAME_BYTES).toBe(FRAME_HEADER + CHUNK_BYTES);
  });
});

describe("encodeFrame layout", () => {
  it("writes version, kind and big-endian offset before the data", () => {
    const frame = encodeFrame("results", 0x0102030405, new Uint8Array([9, 8, 7]));
    expect([...frame]).toEqual([FRAME_VERSION, 2, 0, 0, 0, 1, 2, 3, 4, 5, 9, 8, 7]);
    expect(encodeFrame("payload", 0, new Uint8Array())[1]).toBe(1);
  });

  it("matches a hand-built frame", () => {
    expect(encodeFrame("payload", 2 ** 40, new Uint8Array([1, 2]))).toEqual(rawFrame(1, 1, 2n ** 40n, [1, 2]));
  });
});

describe("encode/decode round trip", () => {
  const kinds: StreamKind[] = ["payload", "results"];
  const offsets = [0, 2 ** 40, Number.MAX_SAFE_INTEGER];
  for (const kind of kinds) {
    for (const offset of offsets) {
      it(`${kind} at offset ${offset}`, () => {
        const data = new Uint8Array([0, 1, 2, 250, 255]);
        const decoded = decodeFrame(encodeFrame(kind, offset, data));
        expect(decoded.ok).toBe(true);
        if (decoded.ok) {
          expect(decoded.value.kind).toBe(kind);
          expect(decoded.value.offset).toBe(offset);
          expect([...decoded.value.data]).toEqual([...data]);
        }
      });
    }
  }

  it("empty data", () => {
    const frame = encodeFrame("results", 7, new Uint8Array());
    expect(frame.byteLength).toBe(FRAME_HEADER);
    const decoded = decodeFrame(frame);
    expect(decoded).toEqual({ ok: true, value: { kind: "results", offset: 7, data: new Uint8Array() } });
  });

  it("a frame of exactly MAX_FRAME_BYTES", () => {
    const data = new Uint8Array(CHUNK_BYTES).map((_, i) => i % 251);
    const frame = encodeFrame("payload", 123, data);
    expect(frame.byteLength).toBe(MAX_FRAME_BYTES);
    const decoded = decodeFrame(frame);
    expect(decoded.ok).toBe(true);
    if (decoded.ok) {
      expect(decoded.value.data.byteLength).toBe(CHUNK_BYTES);
      expect(Buffer.from(decoded.value.data).equals(Buffer.from(data))).toBe(true);
    }
  });

  it("accepts an ArrayBuffer", () => {
    const frame = encodeFrame("results", 42, new Uint8Array([5, 6]));
    const buffer = new ArrayBuffer(frame.byteLength);
    new Uint8Array(buffer).set(frame);
    const decoded = decodeFrame(buffer);
    expect(decoded.ok).toBe(true);
    if (decoded.ok) {
      expect(decoded.value).toMatchObject({ kind: "results", offset: 42 });
      expect([...decoded.value.data]).toEqual([5, 6]);
    }
  });

  it("decodes a Uint8Array view into a larger buffer at a non-zero byteOffset", () => {
    const frame = encodeFrame("payload", 2 ** 33 + 5, new Uint8Array([1, 2, 3]));
    const big = new Uint8Array(frame.byteLength + 20).fill(0xee);
    big.set(frame, 7);
    const view = big.subarray(7, 7 + frame.byteLength);
    const decoded = decodeFrame(view);
    expect(decoded.ok).toBe(true);
    if (decoded.ok) {
      expect(decoded.value.offset).toBe(2 ** 33 + 5);
      expect([...decoded.value.data]).toEqual([1, 2, 3]);
    }
  });
});

describe("decodeFrame errors", () => {
  it.each([0, 1, 9])("rejects %i bytes as too short", (length) => {
    expectError(decodeFrame(new Uint8Array(length)), "bad_frame");
  });

  it("rejects a frame one byte over MAX_FRAME_BYTES as frame_too_large", () => {
    const frame = rawFrame(1, 1, 0n, new Array<number>(CHUNK_BYTES + 1).fill(0));
    expect(frame.byteLength).toBe(MAX_FRAME_BYTES + 1);
    expectError(decodeFrame(frame), "frame_too_large");
  });

  it.each([0, 2, 255])("rejects version %i", (version) => {
    expectError(decodeFrame(rawFrame(version, 1, 0n, [1])), "bad_frame");
  });

  it.each([0, 3, 255])("rejects unknown kind %i", (kind) => {
    expectError(decodeFrame(rawFrame(1, kind, 0n, [1])), "bad_frame");
  });

  it("accepts offset MAX_SAFE_INTEGER built by hand", () => {
    const decoded = decodeFrame(rawFrame(1, 2, BigInt(Number.MAX_SAFE_INTEGER)));
    expect(decoded.ok && decoded.value.offset).toBe(Number.MAX_SAFE_INTEGER);
  });

  it.each([BigInt(Number.MAX_SAFE_INTEGER) + 1n, 2n ** 63n, 2n ** 64n - 1n])("rejects offset %s", (offset) => {
    expectError(decodeFrame(rawFrame(1, 1, offset)), "bad_frame");
  });
});

describe("properties", () => {
  it("any byte array decodes to ok or a typed error, never throws", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
        const result = decodeFrame(bytes);
        if (result.ok) {
          expect(["payload", "results"]).toContain(result.value.kind);
          expect(Number.isSafeInteger(result.value.offset)).toBe(true);
          expect(result.value.offset).toBeGreaterThanOrEqual(0);
          expect(result.value.data.byteLength).toBe(bytes.byteLength - FRAME_HEADER);
        } else {
          expect(isErrorCode(result.error.code)).toBe(true);
          expect(["bad_frame", "frame_too_large"]).toContain(result.error.code);
          expect(typeof result.error.message).toBe("string");
        }
      }),
      { numRuns: 500 },
    );
  });

  it("byte arrays with a valid header prefix and random tails decode or fail typed", () => {
    const header = fc.tuple(
      fc.constantFrom(0, 1, 2),
      fc.constantFrom(0, 1, 2, 3),
      fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
    );
    fc.assert(
      fc.property(header, fc.uint8Array({ maxLength: 32 }), ([version, kind, offset], tail) => {
        const bytes = rawFrame(version, kind, offset, [...tail]);
        const result = decodeFrame(bytes);
        const valid = version === 1 && (kind === 1 || kind === 2) && offset <= BigInt(Number.MAX_SAFE_INTEGER);
        expect(result.ok).toBe(valid);
        if (!result.ok) expect(result.error.code).toBe("bad_frame");
      }),
      { numRuns: 300 },
    );
  });

  it("encode then decode round trips arbitrary data and safe offsets", () => {
    fc.assert(
      fc.property(
        fc.constantFrom<StreamKind>("payload", "results"),
        fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
        fc.uint8Array({ maxLength: 4096 }),
        (kind, offset, data) => {
          const frame = encodeFrame(kind, offset, data);
          expect(frame.byteLength).toBe(FRAME_HEADER + data.byteLength);
          const decoded = decodeFrame(frame);
          expect(decoded.ok).toBe(true);
          if (decoded.ok) {
            expect(decoded.value.kind).toBe(kind);
            expect(decoded.value.offset).toBe(offset);
            expect(Buffer.from(decoded.value.data).equals(Buffer.from(data))).toBe(true);
          }
        },
      ),
      { numRuns: 200 },
    );
  });
});
