/**
 * A unit's payload, pulled over its data socket into the spool's payload file. At most `window`
 * bytes are requested and not yet received; each link (re)starts from the bytes received, and
 * frames of a request made on an earlier link are dropped, so the file is written in order and
 * without holes whatever the link does.
 *
 * A streaming payload (still being uploaded to the broker) has no final size yet: the download
 * pulls a window ahead of what it has, the broker sends bytes as they arrive, and `end` gives the
 * size once the broker has it whole. `onData` sees every byte in order, after the file (the
 * command's stdin feed, stdin-feed.ts).
 */
import { type FileHandle, open } from "node:fs/promises";
import { encode } from "../shared/protocol.js";
import { writeAll } from "./disk.js";

/** What the download needs of a data socket (socket.ts's Link). */
export interface SendLink {
  /**
   * Sends `data`, done with it on return: the caller may reuse the buffer. A WebSocket's send (Node's
   * built-in and the undici package's) masks the bytes into a frame of its own before it returns.
   */
  send(data: string | Uint8Array): void;
}

/** What the download needs of the payload file. */
export type PayloadFile = Pick<FileHandle, "write" | "close">;

export interface DownloadOptions {
  path: string;
  /** Bytes requested but not yet received, at most. */
  window?: number;
  /** Bytes asked for by one payload-pull. */
  request?: number;
  /** Called once, after the last byte is written (at once for an empty payload). */
  onComplete: () => Promise<void>;
  /** A write failed (a full disk, typically): the download stops. */
  onError: (error: unknown) => void;
  /** Each piece of the payload in order, once written to the file; the next waits for it. */
  onData?: (data: Uint8Array) => Promise<void>;
  openFile?: (path: string) => Promise<PayloadFile>;
}

export const PAYLOAD_WINDOW = 4 * 1024 * 1024;
const REQUEST_BYTES = 1024 * 1024;

export class PayloadDownload {
  private file: PayloadFile | null = null;
  private link: SendLink | null = null;
  private size = 0;
  /** `size` is the payload's whole size (not a streaming payload's bytes so far). */
  private final = true;
  private completed = false;
  private received = 0;
  private requested = 0;
  private writes: Promise<unknown> = Promise.resolve();
  private failed = false;

  constructor(private readonly opts: DownloadOptions) {}

  /** Bytes received so far (all written once `writes` settle). */
  get bytesReceived(): number {
    return this.received;
  }

  /**
   * Starts, or resumes on a new link: opens (truncates) the file the first time only, then asks for
   * what is missing. Requests made on an earlier link are forgotten; their frames will not match.
   */
  async start(link: SendLink, size: number, streaming = false): Promise<void> {
    this.link = link;
    if (!this.completed) {
      this.size = size;
      this.final = !streaming;
    }
    this.file ??= await (this.opts.openFile ?? ((path) => open(path, "w", 0o600)))(this.opts.path);
    this.requested = this.received;
    this.pull();
    if (this.final && this.received === this.size) await this.complete();
  }

  /** A streaming payload is whole at `size` bytes (the broker's `payload-end`). */
  end(size: number): void {
    if (this.final) return;
    this.size = size;
    this.final = true;
    // Everything may be in already: complete once its writes are done.
    if (this.received === size) this.writes = this.writes.then(() => (this.failed ? undefined : this.complete()));
  }

  private async complete(): Promise<void> {
    if (this.completed) return;
    this.completed = true;
    await this.opts.onComplete();
  }

  /**
   * A payload frame. Returns false when no download is open to take it; a frame at another offset
   * (from a request made on an earlier link) is dropped as expected.
   */
  accept(offset: number, data: Uint8Array): boolean {
    const file = this.file;
    if (!file) return false;
    if (offset !== this.received || this.failed) return true;
    this.received += data.byteLength;
    const { onData } = this.opts;
    this.writes = this.writes
      // After a failed write the frames queued behind it have nowhere to go either.
      .then(() => (this.failed ? undefined : writeAll(file, data, offset)))
      .then(() => (this.failed || !onData ? undefined : onData(data)))
      .then(() => {
        if (this.failed) return;
        // Read at this point, not when the frame came: a payload-end may have come since.
        if (this.final && offset + data.byteLength === this.size) return this.complete();
        this.pull();
      })
      .catch((error) => {
        this.failed = true;
        this.opts.onError(error);
      });
    return true;
  }

  /** The file is final (or abandoned): close it; a later frame is no longer taken. */
  async close(): Promise<void> {
    const file = this.file;
    this.file = null;
    await file?.close();
  }

  private pull(): void {
    const window = this.opts.window ?? PAYLOAD_WINDOW;
    const request = this.opts.request ?? REQUEST_BYTES;
    while ((!this.final || this.requested < this.size) && this.requested - this.received < window) {
      const length = this.final ? Math.min(request, this.size - this.requested) : request;
      this.link?.send(encode({ type: "payload-pull", offset: this.requested, length }));
      this.requested += length;
    }
  }
}
