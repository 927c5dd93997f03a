/**
 * A tar file as a pull-based byte stream: files are taken from the iterator and their bodies
 * read only as the reader consumes the tar (tar-stream's pack holds back once its buffer is
 * full), so a slow reader holds at most a buffer, however large the archive.
 */
import { pack } from "tar-stream";

export interface TarFile {
  name: string;
  type: "file" | "directory";
  mode: number;
  mtime: Date;
  size: number;
  /** The contents in pieces, read when the file's turn comes; they add up to `size`. */
  body(): Iterable<Uint8Array>;
}

export function tarStream(files: Iterable<TarFile>, onError: (error: unknown) => void): ReadableStream<Uint8Array> {
  const tar = pack();
  let cancelled = false;
  const produce = async () => {
    for (const file of files) {
      if (tar.destroyed) return;
      await new Promise<void>((resolve, reject) => {
        const header = { name: file.name, type: file.type, mode: file.mode, mtime: file.mtime, size: file.size };
        const sink = tar.entry(header, (error) => (error ? reject(error) : resolve()));
        // Its failures reach the callback above; unheard, an "error" event would be thrown.
        sink.on("error", () => undefined);
        if (file.type !== "directory") writeBody(sink, file).catch(reject);
      });
    }
    tar.finalize();
  };
  produce().catch((error: unknown) => {
    if (!cancelled) onError(error);
    tar.destroy(error as Error);
  });
  let ended = false;
  let failure: unknown = null;
  let wake = () => {};
  tar.on("readable", () => wake());
  tar.on("end", () => {
    ended = true;
    wake();
  });
  tar.on("error", (error: unknown) => {
    failure = error;
    wake();
  });
  tar.on("close", () => wake());
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        for (;;) {
          const batch = readBatch(tar);
          if (batch) return controller.enqueue(batch);
          if (failure !== null) throw failure;
          if (ended || tar.destroyed) return controller.close();
          await new Promise<void>((resolve) => {
            wake = resolve;
          });
        }
      },
      async cancel() {
        cancelled = true;
        tar.destroy();
      },
    },
    { highWaterMark: 0 },
  );
}

const BATCH_BYTES = 64 * 1024;
const SLICE_BYTES = 64 * 1024;

/**
 * What the packer holds, up to BATCH_BYTES, as one chunk: many small pieces (a header, an event
 * line, padding) in one copy (a copy also because tar-stream reuses its buffer of zero padding).
 */
function readBatch(tar: { read(): unknown }): Uint8Array | null {
  const parts: Uint8Array[] = [];
  let size = 0;
  while (size < BATCH_BYTES) {
    const part = tar.read() as Uint8Array | null;
    if (part === null) break;
    parts.push(part);
    size += part.byteLength;
  }
  if (parts.length === 0) return null;
  const out = new Uint8Array(size);
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.byteLength;
  }
  return out;
}

/** The part of a tar-stream entry writer used here (its types are Node's stream types). */
interface Sink {
  destroyed: boolean;
  write(chunk: Uint8Array): boolean;
  end(data?: undefined): unknown;
  on(event: "drain" | "close", listener: () => void): unknown;
  off(event: "drain" | "close", listener: () => void): unknown;
}

async function writeBody(sink: Sink, file: TarFile): Promise<void> {
  for (const piece of file.body()) {
    // Slices, so the packer's buffer and the reader's chunks stay small whatever a body yields.
    for (let at = 0; at < piece.byteLength; at += SLICE_BYTES) {
      if (sink.destroyed) return;
      if (!sink.write(piece.subarray(at, at + SLICE_BYTES))) await drainedOrClosed(sink);
    }
  }
  sink.end();
}

/** "close" too: a reader that goes away destroys the entry, which then never drains. */
function drainedOrClosed(sink: Sink): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      sink.off("drain", done);
      sink.off("close", done);
      resolve();
    };
    sink.on("drain", done);
    sink.on("close", done);
  });
}
