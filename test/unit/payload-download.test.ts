import { describe, expect, it } from "vitest";
import { type PayloadFile, PayloadDownload } from "../../agent/payload-download.js";
import { FakeLink, MemoryFile, bytes } from "./fixtures/fake-link.js";

function setup(file = new MemoryFile(), window = 40, request = 10) {
  const events: string[] = [];
  const errors: unknown[] = [];
  /** The sizes onData saw, in order (the stdin feed of a streaming payload). */
  const fed: number[] = [];
  const download = new PayloadDownload({
    path: "payload",
    window,
    request,
    openFile: async () => file as unknown as PayloadFile,
    onComplete: async () => void events.push("complete"),
    onError: (error) => void errors.push(error),
    onData: async (data) => void fed.push(data.byteLength),
  });
  return { download, file, events, errors, fed };
}

const pulls = (link: FakeLink) => link.texts.map((t) => t as { type: string; offset: number; length: number });
const settle = () => new Promise((resolve) => setTimeout(resolve, 0));

/** Answers every pull on `link` from `payload`, as the broker would. */
function answer(download: PayloadDownload, link: FakeLink, payload: Uint8Array, from = 0): void {
  for (const pull of pulls(link).slice(from))
    download.accept(pull.offset, payload.subarray(pull.offset, pull.offset + pull.length));
}

/** Answers each pull on `link` as it comes, one at a time, until no more are asked for. */
async function serve(download: PayloadDownload, link: FakeLink, payload: Uint8Array): Promise<void> {
  for (let answered = 0; answered < pulls(link).length; answered++) {
    const pull = pulls(link)[answered]!;
    download.accept(pull.offset, payload.subarray(pull.offset, pull.offset + pull.length));
    await settle();
  }
}

describe("PayloadDownload", () => {
  it("asks for no more than the window at once, and for more as bytes arrive", async () => {
    const { download } = setup();
    const link = new FakeLink();
    await download.start(link, 100);
    expect(pulls(link)).toEqual([0, 10, 20, 30].map((offset) => ({ type: "payload-pull", offset, length: 10 })));
    download.accept(0, bytes(10));
    await settle();
    expect(pulls(link).map((p) => p.offset)).toEqual([0, 10, 20, 30, 40]);
  });

  it("writes the whole payload in order and completes once", async () => {
    const { download, file, events } = setup();
    const link = new FakeLink();
    const payload = bytes(95);
    await download.start(link, payload.byteLength);
    await serve(download, link, payload);
    expect(file.bytes).toEqual(payload);
    expect(events).toEqual(["complete"]);
    expect(pulls(link).at(-1)).toEqual({ type: "payload-pull", offset: 90, length: 5 });
  });

  it("completes at once for an empty payload, asking for nothing", async () => {
    const { download, events } = setup();
    const link = new FakeLink();
    await download.start(link, 0);
    expect(link.texts).toEqual([]);
    expect(events).toEqual(["complete"]);
  });

  it("a link dropped mid-download: the next link asks again from the bytes received, and late frames of the old one are dropped", async () => {
    const { download, file, events } = setup();
    const payload = bytes(60);
    const first = new FakeLink();
    await download.start(first, 60);
    download.accept(0, payload.subarray(0, 10));
    await settle();
    first.dropped = true;
    const second = new FakeLink();
    await download.start(second, 60);
    expect(pulls(second)[0]).toEqual({ type: "payload-pull", offset: 10, length: 10 });
    // A frame the first link's request for 20.. brings late: not where the file stands, dropped.
    expect(download.accept(20, payload.subarray(20, 30))).toBe(true);
    expect(download.bytesReceived).toBe(10);
    await serve(download, second, payload);
    expect(file.bytes).toEqual(payload);
    expect(events).toEqual(["complete"]);
  });

  it("opens (truncates) the file on the first link only", async () => {
    let opened = 0;
    const file = new MemoryFile();
    const download = new PayloadDownload({
      path: "payload",
      openFile: async () => {
        opened += 1;
        return file as unknown as PayloadFile;
      },
      onComplete: async () => undefined,
      onError: () => undefined,
    });
    await download.start(new FakeLink(), 10);
    await download.start(new FakeLink(), 10);
    expect(opened).toBe(1);
  });

  it("the window full: nothing more is asked until bytes arrive", async () => {
    const { download } = setup(new MemoryFile(), 20, 10);
    const link = new FakeLink();
    await download.start(link, 100);
    expect(pulls(link)).toHaveLength(2);
    download.accept(5, bytes(5)); // not where the file stands: does not open the window
    await settle();
    expect(pulls(link)).toHaveLength(2);
  });

  it("short writes are written again until the whole frame is stored", async () => {
    const { download, file, events } = setup(new MemoryFile({ shortWrites: 3 }), 100, 10);
    const link = new FakeLink();
    const payload = bytes(25);
    await download.start(link, 25);
    answer(download, link, payload);
    await settle();
    await settle();
    expect(file.bytes).toEqual(payload);
    expect(file.writes).toBeGreaterThan(3);
    expect(events).toEqual(["complete"]);
  });

  it("a write that fails (disk full) stops the download with the error and takes no more frames", async () => {
    const { download, events, errors } = setup(new MemoryFile({ failAfter: 1 }), 100, 10);
    const link = new FakeLink();
    const payload = bytes(30);
    await download.start(link, 30);
    answer(download, link, payload);
    await settle();
    expect(errors).toHaveLength(1);
    expect((errors[0] as NodeJS.ErrnoException).code).toBe("ENOSPC");
    expect(events).toEqual([]);
  });

  it("takes no frame before it starts or once closed", async () => {
    const { download, file } = setup();
    expect(download.accept(0, bytes(1))).toBe(false);
    await download.start(new FakeLink(), 10);
    await download.close();
    expect(file.closed).toBe(true);
    expect(download.accept(0, bytes(1))).toBe(false);
  });
});

describe("PayloadDownload of a streaming payload (size not yet known)", () => {
  const streaming = () => setup();

  it("pulls a window ahead of what it has, and completes once payload-end says the size", async () => {
    const { download, file, fed, events, errors } = streaming();
    const link = new FakeLink();
    await download.start(link, 0, true);
    // Nothing is in yet, and the size is unknown: a window of pulls ahead, no completion.
    expect(pulls(link).map((p) => [p.offset, p.length])).toEqual([
      [0, 10],
      [10, 10],
      [20, 10],
      [30, 10],
    ]);
    const payload = bytes(25);
    download.accept(0, payload.subarray(0, 10));
    download.accept(10, payload.subarray(10, 20));
    await settle();
    expect(events).toEqual([]);
    download.accept(20, payload.subarray(20, 25));
    download.end(25);
    await settle();
    await settle();
    expect(events).toEqual(["complete"]);
    expect(errors).toEqual([]);
    expect(file.bytes).toEqual(payload);
    expect(fed).toEqual([10, 10, 5]);
  });

  it("completes when payload-end comes before the last bytes, and not before them", async () => {
    const { download, events, errors } = streaming();
    const link = new FakeLink();
    await download.start(link, 0, true);
    download.accept(0, bytes(10));
    download.end(15);
    await settle();
    expect(events).toEqual([]);
    download.accept(10, bytes(5));
    await settle();
    await settle();
    expect(events).toEqual(["complete"]);
    expect(errors).toEqual([]);
  });

  it("an empty streaming payload completes on payload-end", async () => {
    const { download, events, errors } = streaming();
    await download.start(new FakeLink(), 0, true);
    await settle();
    expect(events).toEqual([]);
    download.end(0);
    await settle();
    expect(events).toEqual(["complete"]);
    expect(errors).toEqual([]);
  });

  it("resumes on a new link from what it has, and a later attach with the whole size completes it", async () => {
    const { download, events, file, errors } = streaming();
    const first = new FakeLink();
    await download.start(first, 0, true);
    download.accept(0, bytes(10, 1));
    await settle();
    const second = new FakeLink();
    // The broker has the whole payload by now: attached says so (no payloadStreaming).
    await download.start(second, 12, false);
    expect(pulls(second)).toEqual([{ type: "payload-pull", offset: 10, length: 2 }]);
    download.accept(10, bytes(2, 2));
    await settle();
    await settle();
    expect(events).toEqual(["complete"]);
    expect(errors).toEqual([]);
    expect(file.bytes.byteLength).toBe(12);
  });
});
