import fc from "fast-check";
import { zipSync } from "fflate";
import { describe, expect, it } from "vitest";
import {
  type ByteSource,
  MAX_WHOLE_ENTRY,
  ZipError,
  base64Source,
  decodeBase64,
  entryBytes,
  entryChunks,
  readZipEntries,
} from "../../broker/unit/zip.js";

const encoder = new TextEncoder();
const source = (bytes: Uint8Array): ByteSource => ({
  size: bytes.byteLength,
  read: (o, n) => bytes.slice(o, Math.min(bytes.byteLength, o + n)),
});
const ascii = (text: string) => encoder.encode(text);

/** A zip like ansible-runner's worker writes: deflated files with Unix modes, directory entries. */
function runnerZip(stdout: Uint8Array): Uint8Array {
  const unix = (mode: number) => ({ os: 3, attrs: mode * 0x10000 });
  return zipSync({
    rc: [ascii("0"), unix(0o100600)],
    stdout: [stdout, unix(0o100600)],
    stderr: [new Uint8Array(), unix(0o100644)],
    "job_events/": [new Uint8Array(), unix(0o40700)],
    "fact_cache/localhost": [ascii("{}"), { ...unix(0o100644), level: 0 }],
  });
}

describe("base64 with random access", () => {
  it("decodes like Node's Buffer, padding and all", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
        expect(Buffer.from(decodeBase64(ascii(Buffer.from(bytes).toString("base64")))).equals(Buffer.from(bytes))).toBe(
          true,
        );
      }),
    );
  });

  it("reads any range from only the groups that hold it", () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 1, maxLength: 300 }), fc.nat(), fc.nat(), (bytes, a, b) => {
        const text = ascii(Buffer.from(bytes).toString("base64"));
        const asked: Array<[number, number]> = [];
        const bytesSource = base64Source(text.byteLength, (o, n) => {
          asked.push([o, n]);
          return text.slice(o, o + n);
        });
        expect(bytesSource.size).toBe(bytes.byteLength);
        const offset = a % bytes.byteLength;
        const length = b % (bytes.byteLength - offset + 5);
        asked.length = 0;
        expect(
          Buffer.from(bytesSource.read(offset, length)).equals(Buffer.from(bytes.slice(offset, offset + length))),
        ).toBe(true);
        for (const [o, n] of asked) expect(o % 4 === 0 && n % 4 === 0 && n <= 4 * Math.ceil(length / 3) + 4).toBe(true);
      }),
    );
  });

  it("refuses text that is not base64", () => {
    expect(() => decodeBase64(ascii("ab$d"))).toThrow(ZipError);
    expect(() => decodeBase64(ascii("abc"))).toThrow(ZipError);
    expect(() => decodeBase64(ascii("a=bc"))).toThrow(ZipError);
  });
});

describe("zip reader", () => {
  const stdout = ascii("PLAY [all] ****\r\nok: [localhost]\r\n".repeat(500));
  const zip = runnerZip(stdout);

  it("lists entries with their sizes, Unix modes and kinds", () => {
    const entries = readZipEntries(source(zip));
    expect(entries.map((e) => [e.name, e.directory, e.size, (e.mode & 0o7777).toString(8)])).toEqual([
      ["rc", false, 1, "600"],
      ["stdout", false, stdout.byteLength, "600"],
      ["stderr", false, 0, "644"],
      ["job_events/", true, 0, "700"],
      ["fact_cache/localhost", false, 2, "644"],
    ]);
    expect(entries.find((e) => e.name === "stdout")!.method).toBe(8);
    expect(entries.find((e) => e.name === "fact_cache/localhost")!.method).toBe(0);
  });

  it("inflates entries piece by piece, whatever the piece size", () => {
    for (const chunkSize of [1, 7, 64, 1 << 16]) {
      const entries = readZipEntries(source(zip));
      const out = entries.map((e) => Buffer.concat([...entryChunks(source(zip), e, chunkSize)]).toString());
      expect(out).toEqual(["0", Buffer.from(stdout).toString(), "", "", "{}"]);
    }
  });

  it("reads the zip through its base64, as it lies in the results", () => {
    const text = ascii(Buffer.from(zip).toString("base64"));
    const through = base64Source(text.byteLength, (o, n) => text.slice(o, o + n));
    const stdoutEntry = readZipEntries(through).find((e) => e.name === "stdout")!;
    expect(Buffer.from(entryBytes(through, stdoutEntry)).equals(Buffer.from(stdout))).toBe(true);
  });

  it("says what is wrong with archives it cannot read", () => {
    expect(() => readZipEntries(source(new Uint8Array(100).fill(7)))).toThrow(/no end-of-central-directory/);
    expect(() => readZipEntries(source(zip.slice(0, zip.byteLength - 10)))).toThrow(ZipError);
    const cut = zip.slice();
    const entry = readZipEntries(source(zip)).find((e) => e.name === "stdout")!;
    const short: ByteSource = {
      size: cut.byteLength,
      read: (o, n) => (o > entry.headerOffset + 40 ? new Uint8Array() : cut.slice(o, o + n)),
    };
    expect(() => [...entryChunks(short, entry, 16)]).toThrow(/cut short/);
    const zip64 = zip.slice();
    new DataView(zip64.buffer).setUint16(zip64.byteLength - 22 + 10, 0xffff, true);
    expect(() => readZipEntries(source(zip64))).toThrow(/ZIP64/);
  });

  it("checks sizes the archive claims before allocating for them", () => {
    // A central directory said to be 4 GiB long, in a zip of a few hundred bytes.
    const lying = zip.slice();
    new DataView(lying.buffer).setUint32(lying.byteLength - 22 + 12, 0xfffffff0, true);
    expect(() => readZipEntries(source(lying))).toThrow(/cut short/);
    const entry = readZipEntries(source(zip)).find((e) => e.name === "stdout")!;
    expect(() => entryBytes(source(zip), { ...entry, size: MAX_WHOLE_ENTRY + 1 })).toThrow(/over the/);
  });
});
