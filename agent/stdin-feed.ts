/**
 * The stdin of a unit started on a payload still streaming in (a work type with streamingpayload):
 * a FIFO in the unit's spool that the supervisor opens as the command's stdin (as it opens the
 * payload file otherwise), and that the agent feeds as payload bytes arrive, closing it at the
 * payload's end.
 *
 * If the agent dies before the end, the FIFO's only writer goes and the command reads a cut
 * stream: such a work type does nothing on it (config.ts streamsPayload), but may still exit 0
 * (ansible-runner 2.3.1's worker does, after printing a status line that says error). So once
 * every byte is in the pipe the agent writes STDIN_WHOLE next to the FIFO; a restarted agent that
 * finds the FIFO without it reports the unit failed whatever its exit status (stdinWasCut).
 * A command that exits early (or is killed) makes further writes fail with EPIPE: the feed then
 * drops what is left, which nobody would read.
 */
import { execFile } from "node:child_process";
import { constants, openSync } from "node:fs";
import { Socket } from "node:net";
import { access, rm } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";

const OPEN_POLL_MS = 2;
/** In the unit's spool: the command's stdin, and the mark that all of it reached the pipe. */
export const STDIN_FIFO = "stdin.fifo";
export const STDIN_WHOLE = "stdin.whole";

/** The unit ran on a streaming payload and its agent stopped before feeding it all (see above). */
export async function stdinWasCut(unitDir: string): Promise<boolean> {
  const exists = (name: string) =>
    access(join(unitDir, name)).then(
      () => true,
      () => false,
    );
  return (await exists(STDIN_FIFO)) && !(await exists(STDIN_WHOLE));
}

/** The detail of a unit whose command read a cut stdin: failed, whatever its exit status. */
export function cutStdinDetail(exit: { exitCode: number | null; signal: string | null }): string {
  const status = exit.signal ? `killed by signal ${exit.signal}` : `exit status ${exit.exitCode ?? "unknown"}`;
  return `payload_incomplete: the agent restarted while it fed the streaming payload, so the command read a cut stdin (it ended with ${status})`;
}

export class StdinFeed {
  private socket: Socket | null = null;
  private opening: Promise<Socket | null> | null = null;
  private stopped = false;
  private broken = false;
  private made: Promise<void> | null = null;

  constructor(readonly path: string) {}

  /** Makes the FIFO, once (Node has no mkfifo; coreutils' does it, mode 0600). Writes wait for it. */
  create(): Promise<void> {
    this.made ??= (async () => {
      await rm(this.path, { force: true });
      await promisify(execFile)("mkfifo", ["-m", "600", this.path]);
    })();
    return this.made;
  }

  /**
   * Opens the writing end once the command's side has opened the reading end. A non-blocking open
   * for writing fails (ENXIO) until a reader is there; polling it never ties up a libuv thread the
   * way a blocking open would if the supervisor died before opening.
   */
  private open(): Promise<Socket | null> {
    this.opening ??= (async () => {
      await this.create();
      for (;;) {
        if (this.stopped) return null;
        try {
          const fd = openSync(this.path, constants.O_WRONLY | constants.O_NONBLOCK);
          const socket = new Socket({ fd, readable: false, writable: true });
          // EPIPE: the command is gone. Nothing else to do with the bytes.
          socket.on("error", () => {
            this.broken = true;
          });
          this.socket = socket;
          return socket;
        } catch (error) {
          if ((error as NodeJS.ErrnoException).code !== "ENXIO") throw error;
        }
        await new Promise((resolve) => setTimeout(resolve, OPEN_POLL_MS));
      }
    })();
    return this.opening;
  }

  /** Resolves once the writing end is open (the command's side opened the FIFO): true, or false if stopped first. */
  async connect(): Promise<boolean> {
    return (await this.open()) !== null;
  }

  /** Writes `data` to the command's stdin, resolving once the pipe took it (backpressure). */
  async write(data: Uint8Array): Promise<void> {
    const socket = await this.open();
    if (!socket || this.broken || socket.destroyed) return;
    if (!socket.write(data)) await drainOrClose(socket);
  }

  /** Resolves once every byte written is in the pipe (none left in this process), or the pipe is gone. */
  async drained(): Promise<void> {
    const socket = this.socket;
    if (!socket || socket.destroyed || socket.writableLength === 0) return;
    await drainOrClose(socket);
  }

  /** The payload is whole: the command reads its end. */
  async end(): Promise<void> {
    const socket = await this.open();
    if (!socket || socket.destroyed) return;
    // 'close' comes whether the end was written or the pipe broke (the command gone).
    await new Promise<void>((resolve) => {
      socket.once("close", () => resolve());
      socket.end();
    });
  }

  /** The command is gone or never started: stop waiting for it to open, drop what is buffered. */
  stop(): void {
    this.stopped = true;
    this.socket?.destroy();
  }
}

/** Resolves when the socket's buffer has gone into the pipe, or the pipe is gone. */
function drainOrClose(socket: Socket): Promise<void> {
  return new Promise<void>((resolve) => {
    const done = () => {
      socket.off("drain", done).off("close", done);
      resolve();
    };
    socket.on("drain", done).on("close", done);
  });
}
