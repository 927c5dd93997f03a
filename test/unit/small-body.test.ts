import { describe, expect, it } from "vitest";
import { bodyOf, isSmall, readSmallBody } from "../../broker/routes/small-body.js";
import type { MeshError } from "../../shared/errors.js";
import { INLINE_PAYLOAD_BYTES } from "../../shared/protocol.js";

/** A body of `chunks`, then its end or `error` (pulled, so the error comes after the chunks). */
const streamOf = (chunks: Uint8Array[], error?: Error) => {
  let next = 0;
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      if (next < chunks.length) controller.enqueue(chunks[next++]!);
      else if (error) controller.error(error);
      else controller.close();
    },
  });
};

const refusal = (promise: Promise<unknown>) =>
  promise.then(
    () => null,
    (error: MeshError) => ({ code: error.code, message: error.message }),
  );

describe("readSmallBody", () => {
  it("a body of exactly its declared length comes whole, joined from its chunks", async () => {
    expect([...(await readSmallBody(streamOf([Uint8Array.of(1, 2), Uint8Array.of(3)]), 3))]).toEqual([1, 2, 3]);
    expect(await readSmallBody(null, 0)).toEqual(new Uint8Array(0));
    expect(await readSmallBody(streamOf([]), 0)).toEqual(new Uint8Array(0));
  });

  it("a body shorter or longer than declared, or one that breaks off, is payload_incomplete", async () => {
    expect(await refusal(readSmallBody(streamOf([Uint8Array.of(1, 2)]), 5))).toEqual({
      code: "payload_incomplete",
      message: "payload ended after 2 of 5 declared bytes",
    });
    expect(await refusal(readSmallBody(streamOf([Uint8Array.of(1, 2, 3)]), 2))).toEqual({
      code: "payload_incomplete",
      message: "payload is longer than its declared 2 bytes",
    });
    expect(await refusal(readSmallBody(streamOf([Uint8Array.of(9)], new Error("connection lost")), 4))).toEqual({
      code: "payload_incomplete",
      message: "payload stream broke after 1 bytes (connection lost)",
    });
  });

  it("bodyOf gives the bytes back as a stream", async () => {
    const reader = bodyOf(Uint8Array.of(4, 5)).getReader();
    expect([...(await reader.read()).value!]).toEqual([4, 5]);
    expect((await reader.read()).done).toBe(true);
    expect((await bodyOf(new Uint8Array(0)).getReader().read()).done).toBe(true);
  });

  it("small is what an assignment may carry inline, and never past the broker's payload limit", () => {
    expect(isSmall(INLINE_PAYLOAD_BYTES, 100 * 1024 * 1024)).toBe(true);
    expect(isSmall(INLINE_PAYLOAD_BYTES + 1, 100 * 1024 * 1024)).toBe(false);
    expect(isSmall(100, 10)).toBe(false);
  });
});
