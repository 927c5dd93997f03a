/**
 * The payload of a submit, made ready to upload with its exact length. The broker takes only
 * bodies that declare their Content-Length: a chunked body cut short can reach it looking complete
 * (wrangler dev forwards it so), and a unit must never run on a truncated stdin. So stdin, pipes
 * and other non-regular files are first copied to a private temporary file.
 */
import { createReadStream } from "node:fs";
import { mkdtemp, open, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";

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
