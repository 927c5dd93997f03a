/**
 * `meshctl work artifacts ID -o FILE`: the unit's artifacts tar, saved whole or not at all. It is
 * written to a temporary file beside FILE (mode 0600: `command` may hold the worker's
 * environment), synced, and renamed over FILE only once the tar is complete.
 */
import { randomBytes } from "node:crypto";
import { open, rename, rm } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import type { Writable } from "node:stream";
import type { EventsClient } from "./events.js";

/** A tar ends with two zero blocks; a body cut short (the broker failing mid-way) does not. */
const END_OF_TAR = 1024;

export async function saveArtifacts(client: EventsClient, id: string, file: string, stdout: Writable): Promise<void> {
  const response = await client.get(`/units/${encodeURIComponent(id)}/artifacts`, {});
  const checked = checkedTar(response.body);
  if (file === "-") {
    for await (const chunk of checked)
      if (!stdout.write(chunk)) await new Promise((resolve) => stdout.once("drain", resolve));
    return;
  }
  const temp = join(dirname(file), `.${basename(file)}.${randomBytes(4).toString("hex")}.part`);
  try {
    const handle = await open(temp, "wx", 0o600);
    try {
      for await (const chunk of checked) await handle.write(chunk);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temp, file);
  } catch (error) {
    await rm(temp, { force: true });
    throw error;
  }
}

/** The body's chunks, then an error if it did not end as a tar ends. */
async function* checkedTar(body: ReadableStream<Uint8Array> | null): AsyncGenerator<Uint8Array> {
  let size = 0;
  let tail = new Uint8Array();
  for await (const chunk of body ?? []) {
    size += chunk.byteLength;
    const joined = new Uint8Array(tail.byteLength + chunk.byteLength);
    joined.set(tail);
    joined.set(chunk, tail.byteLength);
    tail = joined.slice(-END_OF_TAR);
    yield chunk;
  }
  if (size < END_OF_TAR || size % 512 !== 0 || tail.some((b) => b !== 0)) {
    throw new Error(`the artifacts download ended before the tar did (${size} bytes): try again`);
  }
}
