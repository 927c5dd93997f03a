/**
 * Reading a zip archive in place, by byte ranges. ansible-runner's worker sends its artifacts
 * directory as one zip, base64-encoded inside the results stream; the broker lists and inflates
 * its entries from there, a piece at a time, without decoding the whole archive first.
 *
 * Supported: what Python's zipfile writes for ansible-runner (stored or deflated entries). Not
 * supported, with an error that says so: ZIP64, encryption, other compression methods.
 */
import { Inflate } from "fflate";

/** Random access to some bytes: `read` returns fewer bytes than asked only past the end. */
export interface ByteSource {
  size: number;
  read(offset: number, length: number): Uint8Array;
}

export interface ZipEntry {
  name: string;
  directory: boolean;
  /** 0 stored, 8 deflated. */
  method: number;
  compressedSize: number;
  size: number;
  /** Unix mode bits (type and permissions) from the external attributes; 0 if the writer set none. */
  mode: number;
  mtime: Date;
  headerOffset: number;
}

export class ZipError extends Error {
  override name = "ZipError";
}

const EOCD = 0x06054b50;
const CENTRAL = 0x02014b50;
const LOCAL = 0x04034b50;
const EOCD_SIZE = 22;
const MAX_COMMENT = 0xffff;
const decoder = new TextDecoder();

const view = (bytes: Uint8Array) => new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);

function readExactly(source: ByteSource, offset: number, length: number, what: string): Uint8Array {
  // Sizes come from the archive: check them against it before anything is allocated for them.
  if (offset < 0 || offset + length > source.size)
    throw new ZipError(`the zip is cut short: ${what} at byte ${offset} is missing`);
  const bytes = source.read(offset, length);
  if (bytes.byteLength !== length) throw new ZipError(`the zip is cut short: ${what} at byte ${offset} is missing`);
  return bytes;
}

/** The archive's entries, from its central directory (found through the end record). */
export function readZipEntries(source: ByteSource): ZipEntry[] {
  const tailLength = Math.min(source.size, EOCD_SIZE + MAX_COMMENT);
  const tail = readExactly(source, source.size - tailLength, tailLength, "the end record");
  const tailView = view(tail);
  let end = -1;
  for (let i = tail.byteLength - EOCD_SIZE; i >= 0; i--) {
    if (tailView.getUint32(i, true) === EOCD) {
      end = i;
      break;
    }
  }
  if (end === -1) throw new ZipError("not a zip archive: no end-of-central-directory record");
  const count = tailView.getUint16(end + 10, true);
  const directorySize = tailView.getUint32(end + 12, true);
  const directoryOffset = tailView.getUint32(end + 16, true);
  if (count === 0xffff || directorySize === 0xffffffff || directoryOffset === 0xffffffff)
    throw new ZipError("ZIP64 archives are not supported");
  const directory = readExactly(source, directoryOffset, directorySize, "the central directory");
  const dir = view(directory);
  const entries: ZipEntry[] = [];
  let at = 0;
  for (let i = 0; i < count; i++) {
    if (at + 46 > directory.byteLength || dir.getUint32(at, true) !== CENTRAL)
      throw new ZipError(`bad central directory record ${i}`);
    const flags = dir.getUint16(at + 8, true);
    if (flags & 1) throw new ZipError("encrypted zip entries are not supported");
    const nameLength = dir.getUint16(at + 28, true);
    const name = decoder.decode(directory.subarray(at + 46, at + 46 + nameLength));
    const method = dir.getUint16(at + 10, true);
    if (method !== 0 && method !== 8)
      throw new ZipError(`zip entry ${name} uses compression method ${method}; only stored and deflated are supported`);
    entries.push({
      name,
      directory: name.endsWith("/"),
      method,
      compressedSize: dir.getUint32(at + 20, true),
      size: dir.getUint32(at + 24, true),
      mode: dir.getUint32(at + 38, true) >>> 16,
      mtime: dosTime(dir.getUint16(at + 14, true), dir.getUint16(at + 12, true)),
      headerOffset: dir.getUint32(at + 42, true),
    });
    at += 46 + nameLength + dir.getUint16(at + 30, true) + dir.getUint16(at + 32, true);
  }
  return entries;
}

/** zip's MS-DOS date and time (2-second steps, no zone: read as UTC). */
function dosTime(date: number, time: number): Date {
  return new Date(
    Date.UTC((date >> 9) + 1980, ((date >> 5) & 15) - 1, date & 31, time >> 11, (time >> 5) & 63, (time & 31) * 2),
  );
}

/**
 * An entry's contents, inflated `chunkSize` compressed bytes at a time. Throws if the data ends
 * early or inflates to another size than the directory says.
 */
export function* entryChunks(source: ByteSource, entry: ZipEntry, chunkSize = 64 * 1024): Generator<Uint8Array> {
  const header = view(readExactly(source, entry.headerOffset, 30, `the local header of ${entry.name}`));
  if (header.getUint32(0, true) !== LOCAL) throw new ZipError(`bad local header for zip entry ${entry.name}`);
  const start = entry.headerOffset + 30 + header.getUint16(26, true) + header.getUint16(28, true);
  let produced = 0;
  const pending: Uint8Array[] = [];
  const inflate = entry.method === 8 ? new Inflate((data) => pending.push(data)) : null;
  let read = 0;
  do {
    const piece = readExactly(
      source,
      start + read,
      Math.min(chunkSize, entry.compressedSize - read),
      `the data of ${entry.name}`,
    );
    read += piece.byteLength;
    if (!inflate) pending.push(piece);
    else if (entry.compressedSize > 0) inflate.push(piece, read >= entry.compressedSize);
    for (const chunk of pending.splice(0)) {
      produced += chunk.byteLength;
      if (produced > entry.size)
        throw new ZipError(`zip entry ${entry.name} inflates to more than the ${entry.size} bytes its directory says`);
      if (chunk.byteLength > 0) yield chunk;
    }
  } while (read < entry.compressedSize);
  if (produced !== entry.size)
    throw new ZipError(`zip entry ${entry.name} holds ${produced} bytes, not the ${entry.size} its directory says`);
}

/** Entries read whole (to be rewritten, like `command`) may be at most this big. */
export const MAX_WHOLE_ENTRY = 16 * 1024 * 1024;

/** The whole contents of a (small) entry. */
export function entryBytes(source: ByteSource, entry: ZipEntry): Uint8Array {
  if (entry.size > MAX_WHOLE_ENTRY)
    throw new ZipError(`zip entry ${entry.name} is ${entry.size} bytes, over the ${MAX_WHOLE_ENTRY} read whole`);
  const out = new Uint8Array(entry.size);
  let at = 0;
  for (const chunk of entryChunks(source, entry)) {
    out.set(chunk, at);
    at += chunk.byteLength;
  }
  return out;
}

const ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const VALUES = new Int16Array(256).fill(-1);
for (let i = 0; i < ALPHABET.length; i++) VALUES[ALPHABET.charCodeAt(i)] = i;
const PAD = 0x3d;

/**
 * The bytes that standard, padded base64 text encodes, with random access: bytes [o, o + n) need
 * only the text of the 4-character groups that hold them. `readText` reads the text by offset.
 */
export function base64Source(textLength: number, readText: (offset: number, length: number) => Uint8Array): ByteSource {
  if (textLength % 4 !== 0) throw new ZipError(`base64 of ${textLength} characters is not whole 4-character groups`);
  const last = textLength >= 2 ? readText(textLength - 2, 2) : new Uint8Array();
  const padding = (last[1] === PAD ? 1 : 0) + (last[0] === PAD ? 1 : 0);
  const size = (textLength / 4) * 3 - padding;
  return {
    size,
    read(offset, length) {
      const end = Math.min(size, offset + length);
      if (offset >= end) return new Uint8Array();
      const first = Math.floor(offset / 3);
      const groups = Math.ceil(end / 3) - first;
      const decoded = decodeBase64(readText(first * 4, groups * 4));
      return decoded.subarray(offset - first * 3, end - first * 3);
    },
  };
}

/** Decodes whole 4-character groups of standard base64; throws on any other character. */
export function decodeBase64(text: Uint8Array): Uint8Array {
  if (text.byteLength % 4 !== 0) throw new ZipError("base64 text cut short");
  const out = new Uint8Array((text.byteLength / 4) * 3);
  let length = 0;
  for (let i = 0; i < text.byteLength; i += 4) {
    const a = VALUES[text[i]!]!;
    const b = VALUES[text[i + 1]!]!;
    const padC = text[i + 2] === PAD;
    const padD = text[i + 3] === PAD;
    const c = padC ? 0 : VALUES[text[i + 2]!]!;
    const d = padD ? 0 : VALUES[text[i + 3]!]!;
    if (a < 0 || b < 0 || c < 0 || d < 0 || (padC && !padD)) throw new ZipError(`invalid base64 near character ${i}`);
    const bits = (a << 18) | (b << 12) | (c << 6) | d;
    out[length++] = bits >> 16;
    if (!padC) out[length++] = (bits >> 8) & 0xff;
    if (!padD) out[length++] = bits & 0xff;
  }
  return out.subarray(0, length);
}
