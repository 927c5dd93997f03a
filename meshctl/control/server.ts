/**
 * The control service's sockets: a Unix socket (mode 0600) and optionally a loopback TCP port,
 * each connection a receptor control session: greeting, then one command at a time.
 */
import { lstat, unlink } from "node:fs/promises";
import { type Server, type Socket, connect, createServer } from "node:net";
import { Readable } from "node:stream";
import { CliError } from "../../shared/node/cli.js";
import { errorMessage } from "../../shared/node/log.js";
import { type CommandContext, type Session, runCommand } from "./commands.js";
import { errorLine, greeting, parseCommand } from "./protocol.js";

/** Longest command line taken (receptor has no limit, but a line is buffered whole), and most bytes read ahead. */
const MAX_LINE_BYTES = 1024 * 1024;

export class ControlServiceError extends CliError {
  override name = "ControlServiceError";
  constructor(message: string) {
    super("MESH_ERR_CONTROL_SOCKET", message);
  }
}

export interface ControlServiceOptions extends CommandContext {
  socketPath: string;
  tcp?: { host: string; port: number } | undefined;
}

export interface ControlService {
  close(): Promise<void>;
}

export async function startControlService(options: ControlServiceOptions): Promise<ControlService> {
  await clearStaleSocket(options.socketPath);
  const sessions = new Set<Socket>();
  const serve = (socket: Socket) => {
    sessions.add(socket);
    socket.once("close", () => sessions.delete(socket));
    runSession(socket, options).catch((error: unknown) => {
      // A client that left mid-reply (a probe, a killed receptorctl) is routine; anything else is not.
      options.log[socket.destroyed ? "debug" : "warn"]("control:session-failed", { error: errorMessage(error) });
      socket.destroy();
    });
  };
  // Half-open: receptorctl shuts down its sending side while it reads results and submit replies.
  const unix = createServer({ allowHalfOpen: true }, serve);
  // The socket file is created by listen(); a umask makes it 0600 from its first instant.
  const umask = process.umask(0o177);
  try {
    await listen(unix, options.socketPath);
  } finally {
    process.umask(umask);
  }
  let tcp: Server | null = null;
  if (options.tcp) {
    tcp = createServer({ allowHalfOpen: true }, serve);
    try {
      await listen(tcp, options.tcp.port, options.tcp.host);
    } catch (error) {
      await close(unix);
      throw error;
    }
  }
  const address = tcp?.address();
  options.log.info("control:listening", {
    socket: options.socketPath,
    tcp: address && typeof address === "object" ? `${address.address}:${address.port}` : null,
  });
  return {
    async close() {
      for (const socket of sessions) socket.destroy();
      await Promise.all([close(unix), tcp ? close(tcp) : undefined]);
      await unlink(options.socketPath).catch(() => undefined);
    },
  };
}

function listen(server: Server, ...args: [string] | [number, string]): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(...(args as [number, string]), () => {
      server.off("error", reject);
      resolve();
    });
  });
}

function close(server: Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

/** A socket file nobody answers on is left from a process that died; anything else is not ours to remove. */
async function clearStaleSocket(path: string): Promise<void> {
  let stat;
  try {
    stat = await lstat(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return;
    throw error;
  }
  if (!stat.isSocket())
    throw new ControlServiceError(`${path} exists and is not a socket; remove it or choose another --socket`);
  const live = await new Promise<boolean>((resolve) => {
    const probe = connect(path);
    probe.once("connect", () => {
      probe.destroy();
      resolve(true);
    });
    probe.once("error", () => resolve(false));
  });
  if (live) throw new ControlServiceError(`another process is listening on ${path}`);
  await unlink(path);
}

async function runSession(socket: Socket, ctx: CommandContext): Promise<void> {
  const reader = new LineReader(socket);
  const abort = new AbortController();
  socket.once("close", () => abort.abort());
  const write = (text: string) =>
    new Promise<void>((resolve, reject) => {
      if (socket.destroyed || !socket.writable) return reject(new Error("client gone"));
      socket.write(text, (error) => (error ? reject(error) : resolve()));
    });
  const session: Session = { write, payload: () => reader.rest(), out: socket, signal: abort.signal };
  await write(greeting(ctx.bridge().nodeId));
  for (;;) {
    const line = await reader.line();
    if (line === null) break;
    if (line === "") continue;
    const parsed = parseCommand(line);
    if (!parsed.ok) {
      await write(errorLine(parsed.error));
      continue;
    }
    ctx.log.debug("control:command", { command: parsed.command.kind });
    if ((await runCommand(parsed.command, session, ctx)) === "close") break;
  }
  socket.end();
}

/**
 * Lines off the socket, then (for `work submit`) the raw bytes after them. Reading stops while a
 * megabyte waits unread, so a fast payload never outruns its upload; otherwise the socket keeps
 * reading, so a client's end of stream is seen even while a command (results) is writing.
 */
class LineReader {
  private buffer = Buffer.alloc(0);
  private ended = false;
  private failure: Error | null = null;
  private wake: (() => void) | null = null;

  constructor(private readonly socket: Socket) {
    socket.on("data", (chunk: Buffer) => {
      this.buffer = Buffer.concat([this.buffer, chunk]);
      if (this.buffer.byteLength > MAX_LINE_BYTES) socket.pause();
      this.notify();
    });
    socket.once("end", () => {
      this.peerReads().then((reads) => {
        if (reads) this.ended = true;
        else {
          this.failure ??= new Error("the client closed the connection instead of half-closing it");
          socket.destroy();
        }
        this.notify();
      });
    });
    socket.once("close", () => {
      if (!this.ended) this.failure ??= new Error("the client disconnected");
      this.notify();
    });
    socket.on("error", (error) => {
      this.failure ??= error;
      this.notify();
    });
  }

  private notify(): void {
    const wake = this.wake;
    this.wake = null;
    wake?.();
  }

  private more(): Promise<void> {
    return new Promise((resolve) => {
      this.wake = resolve;
      this.socket.resume();
    });
  }

  /**
   * Whether the client still reads after its end of stream, i.e. it half-closed rather than went
   * away. On a Unix socket a client that closed or died leaves ours shut for sending too, so even
   * an empty write fails (EPIPE); over TCP only a reset shows, so there a closed connection
   * counts as a half-close, as it does in receptor.
   */
  private peerReads(): Promise<boolean> {
    return new Promise((resolve) => {
      if (this.socket.destroyed || !this.socket.writable) return resolve(false);
      this.socket.write(Buffer.alloc(0), (error) => resolve(!error));
    });
  }

  /** The next line without "\n" and with every "\r" dropped (as receptor reads), or null at the end. */
  async line(): Promise<string | null> {
    for (;;) {
      const newline = this.buffer.indexOf(0x0a);
      if (newline >= 0) {
        const line = this.buffer.subarray(0, newline).toString("utf8").replaceAll("\r", "");
        this.buffer = this.buffer.subarray(newline + 1);
        return line;
      }
      if (this.failure || this.ended) return null;
      if (this.buffer.byteLength > MAX_LINE_BYTES) {
        this.socket.end(errorLine(`command line longer than ${MAX_LINE_BYTES} bytes`));
        return null;
      }
      await this.more();
    }
  }

  /** Everything left until the client half-closes; a connection that breaks first errors the stream. */
  rest(): Readable {
    // Pulled by whoever reads it, so nothing is read (or can fail unheard) before a reader is attached.
    return Readable.from(this.chunks(), { objectMode: false });
  }

  private async *chunks(): AsyncGenerator<Buffer> {
    for (;;) {
      if (this.buffer.byteLength > 0) {
        const chunk = this.buffer;
        this.buffer = Buffer.alloc(0);
        yield chunk;
        continue;
      }
      if (this.failure) throw this.failure;
      if (this.ended) return;
      await this.more();
    }
  }
}
