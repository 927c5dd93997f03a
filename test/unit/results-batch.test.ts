import { describe, expect, it } from "vitest";
import { PendingResults } from "../../broker/unit/results-batch.js";

const bytes = (n: number) => new Uint8Array(n);

describe("PendingResults", () => {
  it("counts pending bytes past the stored end and gives them back in order, once", () => {
    const pending = new PendingResults();
    expect(pending.end(100)).toBe(100);
    pending.add(100, 100, bytes(4));
    expect(pending.end(100)).toBe(104);
    pending.add(100, 104, bytes(0));
    pending.add(100, 104, bytes(2));
    expect(pending.size).toBe(6);
    expect(pending.take().map((c) => [c.offset, c.data.byteLength])).toEqual([
      [100, 4],
      [104, 2],
    ]);
    expect(pending.size).toBe(0);
    expect(pending.take()).toEqual([]);
    expect(pending.end(106)).toBe(106);
  });

  it("refuses a frame that does not start where the pending ones end", () => {
    const pending = new PendingResults();
    pending.add(0, 0, bytes(3));
    expect(() => pending.add(0, 2, bytes(3))).toThrow(/expected 3/);
    expect(() => pending.add(0, 4, bytes(3))).toThrow(/expected 3/);
  });
});
