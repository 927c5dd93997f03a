import { describe, expect, it } from "vitest";
import { type ResultsFile, ResultsUpload } from "../../agent/results-upload.js";
import { FakeLink, MemoryFile, bytes } from "./fixtures/fake-link.js";

/** A results file in memory that the "command" appends to; `missing` until it is created. */
function results(initial?: Uint8Array) {
  const file = new MemoryFile();
  let missing = initial === undefined;
  if (initial) file.bytes = initial;
  const source: ResultsFile = {
    open: async () => {
      if (missing) throw Object.assign(new Error("no such file"), { code: "ENOENT" });
      return file;
    },
    size: async () => file.bytes.byteLength,
  };
  return {
    source,
    append(data: Uint8Array) {
      missing = false;
      const grown = new Uint8Array(file.bytes.byteLength + data.byteLength);
      grown.set(file.bytes);
      grown.set(data, file.bytes.byteLength);
      file.bytes = grown;
    },
  };
}

const setup = (file: ResultsFile, window = 30, chunk = 10) =>
  new ResultsUpload({ path: "stdout", window, chunk, file });
const joined = (link: FakeLink) => Uint8Array.from(link.frames.flatMap((f) => [...f.data]));

describe("ResultsUpload", () => {
  it("sends nothing before a link is attached", async () => {
    const upload = setup(results(bytes(20)).source);
    expect(await upload.pump(true)).toBeNull();
  });

  it("sends up to the window, then refills it once acks bring what is in flight under half of it", async () => {
    const upload = setup(results(bytes(100)).source);
    const link = new FakeLink();
    upload.useLink(link);
    upload.resume(0);
    expect(await upload.pump(false)).toBeNull();
    expect(link.frames.map((f) => f.offset)).toEqual([0, 10, 20]);
    await upload.pump(false);
    expect(link.frames).toHaveLength(3);
    // 20 of the window's 30 still in flight: a frame's worth of room is not worth a pump.
    upload.ack(10);
    await upload.pump(false);
    expect(link.frames).toHaveLength(3);
    // 10 in flight: filled up to the window again while the broker stores the rest.
    upload.ack(20);
    await upload.pump(false);
    expect(link.frames.map((f) => f.offset)).toEqual([0, 10, 20, 30, 40]);
  });

  it("reuses its frame buffer, and what the link got is what the file held", async () => {
    const payload = bytes(100);
    const upload = setup(results(payload).source);
    const sent: Uint8Array[] = [];
    // A link that keeps the very buffers it is given, as a broken send that does not copy would.
    upload.useLink({ send: (data) => void (typeof data !== "string" && sent.push(data)) });
    upload.resume(0);
    await upload.pump(false);
    upload.ack(30);
    await upload.pump(false);
    expect(sent).toHaveLength(6);
    expect(new Set(sent.map((f) => f.buffer)).size).toBe(1);
  });

  it("an older acknowledgement never moves the window back", async () => {
    const upload = setup(results(bytes(100)).source);
    const link = new FakeLink();
    upload.useLink(link);
    upload.resume(0);
    upload.ack(30);
    upload.ack(10);
    await upload.pump(false);
    expect(link.frames.map((f) => f.offset)).toEqual([0, 10, 20, 30, 40, 50]);
  });

  it("reports the size once the command has ended and every byte is acknowledged", async () => {
    const upload = setup(results(bytes(25)).source);
    const link = new FakeLink();
    upload.useLink(link);
    upload.resume(0);
    expect(await upload.pump(true)).toBeNull();
    expect(joined(link)).toEqual(bytes(25));
    upload.ack(25);
    expect(await upload.pump(true)).toBe(25);
  });

  it("no results file (the command never started): size 0 at once", async () => {
    const upload = setup(results().source);
    upload.useLink(new FakeLink());
    upload.resume(0);
    expect(await upload.pump(true)).toBe(0);
  });

  it("a short read (the command is still writing) sends what is there, and the rest on a later pump", async () => {
    const file = results(bytes(5));
    const upload = setup(file.source);
    const link = new FakeLink();
    upload.useLink(link);
    upload.resume(0);
    await upload.pump(false);
    expect(link.frames.map((f) => [f.offset, f.data.byteLength])).toEqual([[0, 5]]);
    file.append(bytes(12, 5));
    await upload.pump(false);
    expect(link.frames.map((f) => [f.offset, f.data.byteLength])).toEqual([
      [0, 5],
      [5, 10],
      [15, 2],
    ]);
  });

  it("a link dropped mid-upload: the next link resumes from the broker's offset, nothing lost or doubled", async () => {
    const payload = bytes(50);
    const upload = setup(results(payload).source);
    const first = new FakeLink();
    upload.useLink(first);
    upload.resume(0);
    await upload.pump(false);
    upload.ack(10);
    first.dropped = true;
    await upload.pump(false); // sent into the dead link
    const second = new FakeLink();
    upload.useLink(second);
    upload.resume(10); // the broker stored 10 bytes
    await upload.pump(false);
    upload.ack(40);
    expect(await upload.pump(true)).toBeNull();
    upload.ack(50);
    expect(await upload.pump(true)).toBe(50);
    const stored = new Uint8Array(50);
    stored.set(first.frames[0]!.data, 0);
    for (const frame of second.frames) stored.set(frame.data, frame.offset);
    expect(stored).toEqual(payload);
    expect(second.frames[0]!.offset).toBe(10);
  });

  it("a pump already running makes another return at once", async () => {
    const upload = setup(results(bytes(10)).source);
    upload.useLink(new FakeLink());
    upload.resume(0);
    const [a, b] = await Promise.all([upload.pump(false), upload.pump(true)]);
    expect([a, b]).toEqual([null, null]);
  });

  it("an ack that comes while a pump runs is not lost: the running pump goes round again", async () => {
    const file = results(bytes(100)).source;
    let closing!: () => void;
    const closed = new Promise<void>((resolve) => (closing = resolve));
    // The running pump has filled the window and is closing the file when the ack comes.
    const slowClose: ResultsFile = {
      ...file,
      open: async (path) => {
        const reader = await file.open(path);
        return { read: reader.read.bind(reader), close: () => closed.then(() => reader.close()) };
      },
    };
    const upload = setup(slowClose);
    const link = new FakeLink();
    upload.useLink(link);
    upload.resume(0);
    const running = upload.pump(false);
    await new Promise((r) => setTimeout(r, 10));
    expect(link.frames).toHaveLength(3);
    upload.ack(30);
    expect(await upload.pump(false)).toBeNull();
    closing();
    await running;
    expect(link.frames.map((f) => f.offset)).toEqual([0, 10, 20, 30, 40, 50]);
  });

  it("a full window opens no file until an ack", async () => {
    let opened = 0;
    const file = results(bytes(100)).source;
    const upload = setup({
      ...file,
      open: (path) => {
        opened++;
        return file.open(path);
      },
    });
    upload.useLink(new FakeLink());
    upload.resume(0);
    await upload.pump(false);
    await upload.pump(false);
    expect(opened).toBe(1);
    upload.ack(10);
    await upload.pump(false);
    expect(opened).toBe(1);
    upload.ack(30);
    await upload.pump(false);
    expect(opened).toBe(2);
  });
});

describe("ResultsUpload with an output cap", () => {
  const text = Array.from({ length: 40 }, (_, i) => `line ${String(i).padStart(2, "0")}\n`).join("");
  it("sends the head while the command runs, the capped stream once it ended, and reports the capped size", async () => {
    const file = results(new TextEncoder().encode(text));
    const upload = new ResultsUpload({ path: "stdout", window: 1000, chunk: 7, file: file.source, cap: 60 });
    const link = new FakeLink();
    upload.useLink(link);
    upload.resume(0);
    expect(await upload.pump(false)).toBeNull();
    expect(new TextDecoder().decode(joined(link))).toBe("line 00\nline 01\nline 02\n");
    expect(await upload.pump(true)).toBeNull();
    const sent = new TextDecoder().decode(joined(link));
    expect(sent).toMatch(
      /^line 00\nline 01\nline 02\n\[mesh-agent: output cap: \d+ lines \(\d+ bytes\) cut here; the head and the tail are kept\]\nline 3\d\n/,
    );
    expect(sent.endsWith("line 38\nline 39\n")).toBe(true);
    upload.ack(sent.length);
    expect(await upload.pump(true)).toBe(sent.length);
    // Head: lines 00-02 (24 bytes of 30); tail: lines 37-39 (24 of 30); the 34 between are cut.
    expect(upload.cut).toEqual({ lines: 34, bytes: 34 * 8 });
  });
});
