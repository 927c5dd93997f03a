import { describe, expect, it } from "vitest";
import { isDiskFull, localFailureDetail, shouldReport, writeAll } from "../../agent/disk.js";

const MiB = 1024 * 1024;
const at = (freeMiB: number, minFreeMiB = 256) => ({ freeBytes: freeMiB * MiB, minFreeBytes: minFreeMiB * MiB });

describe("shouldReport", () => {
  it.each<[string, ReturnType<typeof at> | null, ReturnType<typeof at>, number, boolean]>([
    ["nothing sent yet", null, at(5000), 0, true],
    ["dropped below --min-free: at once", at(300), at(200), 0, true],
    ["back above it: at once", at(200), at(300), 0, true],
    ["--min-free changed", at(5000, 256), at(5000, 512), 0, true],
    ["unchanged for an hour", at(5000), at(5000), 3_600_000, false],
    ["drifted 10% but within the minute", at(5000), at(4400), 59_000, false],
    ["drifted 12% after a minute", at(5000), at(4400), 60_000, true],
    ["drifted 5% after an hour", at(5000), at(4750), 3_600_000, false],
    ["drifted 63 MiB of 400 (below the 64 MiB floor)", at(400), at(337), 60_000, false],
    ["drifted 64 MiB of 400", at(400), at(336), 60_000, true],
    ["still low, changing", at(100), at(20), 60_000, true],
    ["still low, steady", at(100), at(99), 60_000, false],
  ])("%s", (_name, last, now, elapsed, expected) => {
    expect(shouldReport(last, now, elapsed)).toBe(expected);
  });
});

describe("localFailureDetail", () => {
  const errno = (code: string, message: string) => Object.assign(new Error(message), { code });
  it.each([
    [
      errno("ENOSPC", "ENOSPC: no space left on device, write"),
      "node a3: no space left on device while writing the payload",
    ],
    [
      errno("EDQUOT", "EDQUOT: disk quota exceeded, write"),
      "node a3: no space left on device while writing the payload",
    ],
    [errno("EIO", "EIO: i/o error, write"), "node a3: agent error while writing the payload: EIO: i/o error, write"],
    ["a string", "node a3: agent error while writing the payload: a string"],
  ])("%s", (error, detail) => {
    expect(localFailureDetail("a3", "writing the payload", error)).toBe(detail);
    expect(isDiskFull(error)).toBe(detail.includes("no space"));
  });
});

describe("writeAll", () => {
  const fake = (grants: number[]) => {
    const calls: [number, number, number][] = [];
    return {
      calls,
      write: async (_d: Uint8Array, offset: number, length: number, position: number) => {
        calls.push([offset, length, position]);
        const n = Math.min(length, grants.shift() ?? length);
        return { bytesWritten: n, buffer: _d };
      },
    };
  };

  it("writes the rest after a short write, at the right place", async () => {
    const file = fake([4]);
    await writeAll(file as never, new Uint8Array(10), 100);
    expect(file.calls).toEqual([
      [0, 10, 100],
      [4, 6, 104],
    ]);
  });

  it("a write that makes no progress is ENOSPC, not a loop", async () => {
    const file = fake([3, 0]);
    await expect(writeAll(file as never, new Uint8Array(10), 0)).rejects.toMatchObject({ code: "ENOSPC" });
  });
});
