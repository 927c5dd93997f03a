/**
 * A unit's results, streamed from the spool's results file (which the command appends to) over its
 * data socket. At most `window` bytes are sent and not yet acknowledged; each link resumes from the
 * offset the broker acknowledged, so results arrive exactly once and in order. With an output cap
 * the stream is the file's capped form (output-cap.ts), and offsets are that stream's.
 */
import { type FSWatcher, closeSync, constants, openSync, readSync, statSync, watch } from "node:fs";
import { CHUNK_BYTES, FRAME_HEADER, writeFrameHeader } from "../shared/frames.js";
import { ResultsSource } from "./output-cap.js";
import type { SendLink } from "./payload-download.js";

/**
 * Bytes sent and not yet acknowledged, at most. Refilled once acks bring what is in flight under
 * half of it, so that the next frames are on their way while the broker stores the last ones
 * (the broker acks each write: broker/unit/agent-link.ts). The window used to be refilled only
 * once empty, to leave workerd's one thread an idle moment per window for its other sockets (a
 * follower, /healthz); the broker's write pacer (broker/unit/write-pacer.ts) now gives that time
 * whatever the agent does, and the agent's wait for the last ack of each window only cost
 * throughput (about a tenth, 84–86 against 89–91 MiB/s in the same bench, load 2.5–3.6).
 */
export const RESULTS_WINDOW = 8 * 1024 * 1024;

interface Reader {
  read(buffer: Buffer, offset: number, length: number, position: number): Promise<{ bytesRead: number }>;
  close(): Promise<void>;
}

/** What the upload needs of the results file. */
export interface ResultsFile {
  open(path: string): Promise<Reader>;
  size(path: string): Promise<number>;
}

/**
 * The spool's results file, read with synchronous calls and without updating its access time. It
 * is a local file the command has just written, so a read is a copy from the page cache
 * (microseconds). Through libuv's thread pool the same read waited behind what else was there (the
 * spool record's fsyncs as the unit starts, a finished unit's removal), and the access-time update
 * that reading a just-written file makes (relatime) waits for the file system's journal: on a busy
 * disk that held the first results back by tens of milliseconds (docs/benchmarks.md).
 */
const DISK: ResultsFile = {
  open: async (path) => {
    let fd: number;
    try {
      fd = openSync(path, constants.O_RDONLY | constants.O_NOATIME);
    } catch (error) {
      // O_NOATIME is for the file's owner only; the agent made the file, but keep reading if not.
      if ((error as NodeJS.ErrnoException).code !== "EPERM") throw error;
      fd = openSync(path, "r");
    }
    return {
      read: async (buffer, offset, length, position) => ({ bytesRead: readSync(fd, buffer, offset, length, position) }),
      close: async () => closeSync(fd),
    };
  },
  size: async (path) => statSync(path).size,
};

export interface UploadOptions {
  path: string;
  /** Bytes sent but not yet acknowledged, at most. */
  window?: number;
  chunk?: number;
  file?: ResultsFile;
  /** The work type's output cap in bytes (shared/output-cap.ts); absent or null: none. */
  cap?: number | null;
}

export class ResultsUpload {
  private link: SendLink | null = null;
  private sent = 0;
  private acked = 0;
  /** The window filled: nothing more is sent until acks bring what is in flight under half of it (RESULTS_WINDOW). */
  private draining = false;
  private pumping = false;
  /** A pump was asked for while one ran: it runs again before it returns (the ask may be an ack). */
  private again = false;
  private watcher: FSWatcher | null = null;
  private poll: NodeJS.Timeout | null = null;
  private readonly source: ResultsSource;
  /**
   * The frame read into and sent, again for every frame: the link is done with the bytes when send
   * returns (SendLink). A new 1 MiB buffer a frame made V8 mark the agent's heap over and over
   * (external memory): a quarter of the agent's CPU while it streamed.
   */
  private frame: Buffer | null = null;

  constructor(private readonly opts: UploadOptions) {
    this.source = new ResultsSource(opts.cap ?? null);
  }

  private get window(): number {
    return this.opts.window ?? RESULTS_WINDOW;
  }

  /** What the output cap cut, once the command has ended; null when nothing was. */
  get cut(): ResultsSource["cut"] {
    return this.source.cut;
  }

  /** Sends go to this link from now on (each new data socket, as soon as it is open). */
  useLink(link: SendLink): void {
    this.link = link;
  }

  /** Attached on a new link: carry on from what the broker has. */
  resume(offset: number): void {
    this.acked = offset;
    this.sent = offset;
    this.draining = false;
  }

  /** Calls `onChange` when the file changes, and every `pollMs` regardless. */
  watch(onChange: () => void, pollMs: number): void {
    try {
      this.watcher = watch(this.opts.path, onChange);
    } catch {
      // inotify may be unavailable or exhausted; the poll below still moves the results.
    }
    this.poll = setInterval(onChange, pollMs);
  }

  unwatch(): void {
    this.watcher?.close();
    if (this.poll) clearInterval(this.poll);
  }

  ack(offset: number): void {
    this.acked = Math.max(this.acked, offset);
    if (this.sent - this.acked < this.window / 2) this.draining = false;
  }

  /**
   * Sends what the window allows. With `ending` (the command has exited, so the file is final),
   * returns the file's size once every byte of it is acknowledged, else null. No file means the
   * command never started, so no results: size 0. A call while one runs returns null at once and
   * makes the running one go round again (an ack may have opened the window meanwhile).
   */
  async pump(ending: boolean): Promise<number | null> {
    if (!this.link) return null;
    if (this.pumping) {
      this.again = true;
      return null;
    }
    // The window is full: nothing to send until the last ack, so no need to open the file (the command's
    // every write wakes a pump while it runs).
    if (!ending && this.draining) return null;
    this.pumping = true;
    this.again = false;
    let size: number | null;
    try {
      size = await this.pumpOnce(ending);
    } finally {
      this.pumping = false;
    }
    return size === null && this.again ? this.pump(ending) : size;
  }

  private async pumpOnce(ending: boolean): Promise<number | null> {
    const file = this.opts.file ?? DISK;
    const reader = await file.open(this.opts.path).catch(() => null);
    // No file means the command never started, so no results.
    if (!reader) return ending && this.acked === 0 ? 0 : null;
    try {
      const ended = ending ? { size: () => file.size(this.opts.path) } : null;
      // Asked for again while sending (the file grew, an ack came): go on with the file open.
      do {
        this.again = false;
        await this.send(reader, ended);
      } while (this.again && !this.draining);
      if (!ended) return null;
      const size = await this.source.size(reader, await ended.size());
      return this.acked === size ? size : null;
    } finally {
      await reader.close();
    }
  }

  private async send(reader: Reader, ended: { size: () => Promise<number> } | null): Promise<void> {
    const chunk = this.opts.chunk ?? CHUNK_BYTES;
    this.frame ??= Buffer.allocUnsafe(FRAME_HEADER + chunk);
    const frame = this.frame;
    while (!this.draining) {
      // Read straight behind the frame's header: the frame is sent as it is, no copy of ours.
      // A re-attach during the read moves `sent`: only send what was read where we still are.
      const at = this.sent;
      const bytesRead = await this.source.read(reader, frame.subarray(FRAME_HEADER), chunk, at, ended);
      if (bytesRead === 0) break;
      if (this.sent !== at) continue;
      this.link?.send(writeFrameHeader(frame.subarray(0, FRAME_HEADER + bytesRead), "results", at));
      this.sent = at + bytesRead;
      if (this.sent - this.acked >= this.window) this.draining = true;
    }
  }
}
