/**
 * The payload of a submit, made ready to upload so that the broker can tell a whole payload from
 * one cut short (a chunked body cut short can reach it looking complete: wrangler dev forwards it
 * so, and a unit must never run on a truncated stdin). A regular file goes with its exact length
 * (Content-Length). Stdin, pipes and other non-regular files are streamed as they are read, framed
 * with an end marker (shared/payload-framing.ts): the upload starts at once, and a unit of a work
 * type that reads a self-delimiting stream (ansible-runner worker) may start on the node while the
 * producer (`ansible-runner transmit`) is still writing. A signed submit needs the whole payload
 * first (the signature covers its digest), so it copies such input to a private temporary file.
 */
import { createReadStream } from "node:fs";
import { mkdtemp, open, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { END_PIECE, MAX_PIECE_BYTES, encodePiece } from "../shared/payload-framing.js";

export interface PreparedPayload {
  path: string;
  size: number;
  /** The bytes to send: exactly `size` of them, even if the file changes meanwhile. */
  body(): Readable | Buffer;
  /** Deletes the temporary copy, if one was made; call once the upload is over. */
  remove(): Promise<void>;
}

/** Copies a stream to a private (0600) temporary file; `remove` deletes it and its directory. */
export async function spool(input: Readable): Promise<{ path: string; remove: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), "meshctl-"));
  const remove = () => rm(dir, { recursive: true, force: true });
  const path = join(dir, "payload");
  try {
    const file = await open(path, "wx", 0o600);
    await pipeline(input, file.createWriteStream());
  } catch (error) {
    await remove();
    throw error;
  }
  return { path, remove };
}

/** A payload of unknown length, framed as it is read (payload-framing.ts). */
export interface StreamedPayload {
  framed: true;
  body(): Readable;
}

/** `input` as framed pieces, ended by the end marker once `input` ends; an input error ends the body without it. */
export function framedBody(input: Readable): Readable {
  return Readable.from(
    (async function* () {
      for await (const chunk of input) {
        const bytes = typeof chunk === "string" ? Buffer.from(chunk) : (chunk as Buffer);
        for (let at = 0; at < bytes.byteLength; at += MAX_PIECE_BYTES)
          yield encodePiece(bytes.subarray(at, at + MAX_PIECE_BYTES));
      }
      yield END_PIECE;
    })(),
    { objectMode: false },
  );
}

/**
 * `source` is a file path, or "-" for stdin. A regular file, or any source when `whole` (signing),
 * is a PreparedPayload of known size; anything else is streamed.
 */
export async function openPayload(
  source: string,
  { whole }: { whole: boolean },
  stdin: Readable = process.stdin,
): Promise<PreparedPayload | StreamedPayload> {
  const regular = source !== "-" && (await stat(source)).isFile();
  if (regular || whole) return preparePayload(source, stdin);
  const input = source === "-" ? stdin : createReadStream(source);
  return { framed: true, body: () => framedBody(input) };
}

/** `source` is a file path, or "-" for stdin. */
export async function preparePayload(source: string, stdin: Readable = process.stdin): Promise<PreparedPayload> {
  const regular = source !== "-" && (await stat(source)).isFile();
  const spooled = regular ? null : await spool(source === "-" ? stdin : createReadStream(source));
  const path = spooled?.path ?? source;
  const { size } = await stat(path);
  return {
    path,
    size,
    body: () => (size === 0 ? Buffer.alloc(0) : createReadStream(path, { start: 0, end: size - 1 })),
    remove: spooled?.remove ?? (async () => undefined),
  };
}
