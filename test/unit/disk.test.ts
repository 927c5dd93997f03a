import { describe, expect, it } from "vitest";
import { formatBytes, isLowDisk, lowDiskReason, parseBytes } from "../../shared/disk.js";

const MiB = 1024 * 1024;

describe("lowDiskReason", () => {
  it.each([
    [12 * MiB, 256 * MiB, "low disk: 12 MiB free < 256 MiB"],
    [0, 256 * MiB, "low disk: 0 B free < 256 MiB"],
    [255.5 * MiB, 256 * MiB, "low disk: 255 MiB free < 256 MiB"],
    [1536 * MiB, 2048 * MiB, "low disk: 1.5 GiB free < 2 GiB"],
    [256 * MiB, 256 * MiB, null],
    [0, 0, null],
  ])("%i free, min %i: %s", (freeBytes, minFreeBytes, reason) => {
    expect(lowDiskReason({ freeBytes, minFreeBytes })).toBe(reason);
    expect(isLowDisk({ freeBytes, minFreeBytes })).toBe(reason !== null);
  });

  it("is null for a node that reports nothing", () => {
    expect(lowDiskReason(undefined)).toBeNull();
    expect(lowDiskReason(null)).toBeNull();
  });
});

describe("formatBytes", () => {
  it.each([
    [0, "0 B"],
    [1023, "1023 B"],
    [1024, "1 KiB"],
    [1536, "1.5 KiB"],
    [10 * 1024 - 1, "9.9 KiB"],
    [12 * MiB, "12 MiB"],
    [5 * 1024 ** 4, "5 TiB"],
  ])("%i is %s", (bytes, text) => expect(formatBytes(bytes)).toBe(text));
});

describe("parseBytes", () => {
  it.each<[string, number | null]>([
    ["0", 0],
    ["1048576", MiB],
    ["256MiB", 256 * MiB],
    ["256M", 256 * MiB],
    ["256 MiB", 256 * MiB],
    ["256mb", 256_000_000],
    ["1.5G", 1.5 * 1024 * MiB],
    ["2GB", 2_000_000_000],
    ["10B", 10],
    ["1T", 1024 ** 4],
    ["", null],
    ["-1", null],
    ["12 potatoes", null],
    ["1e9", null],
    ["99999999999T", null],
  ])("%s is %s", (text, bytes) => expect(parseBytes(text)).toBe(bytes));
});
