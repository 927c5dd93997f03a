/**
 * Output caps: a unit's results kept to about `cap` bytes, its head and its tail, with a marker of
 * what was cut between them (GitLab cuts at 4 MiB and keeps only the head; the tail is where a
 * failure is). The cut falls between whole lines, never inside one, and only on lines that may go:
 *
 * - an ansible-runner worker stream (a JSON `status` or `event` line near its start) keeps its
 *   framing whole — status lines, `{"zipfile": N}` with its base64 data, `{"eof": true}` — and
 *   cuts only event lines; the marker is itself a runner event (`verbose`, with a counter and a
 *   uuid), so `ansible-runner process` reads the capped stream as it reads a whole one;
 * - any other output cuts plain lines; the marker is a line of text.
 *
 * The head is what the agent sends while the command runs: the bytes up to the last line end at or
 * before `cap / 2`. Once the command has ended, the rest is planned here from the whole spool file,
 * in two passes: the event (or plain) lines after the head are counted, and if they exceed
 * `cap / 2`, the oldest of them are dropped until the rest fits. The plan is a pure function of the
 * file and the cap, so an agent restarted after the command ended plans the same stream again.
 */

export interface CapPlan {
  /** The capped stream after the head: ranges of the spool file, and the marker's bytes. */
  pieces: ({ from: number; to: number } | { text: Uint8Array })[];
  /** What was cut, or null when the output fit. */
  cut: { bytes: number; lines: number } | null;
}

/** Lines longer than this are never parsed: they are event or plain lines, never framing. */
const PARSE_LIMIT = 1 << 20;
/**
 * Framing a runner stream may keep whole, beyond the cap: ansible-runner writes a few status lines
 * (starting, running, the final one, which may carry a traceback), one zipfile and one eof. Output
 * that imitates more of it (status lines past these bounds, a second zipfile) is cut like any other
 * line, so a work command cannot store more than its cap by dressing its output as framing.
 */
const FRAME_LINE_LIMIT = 64 * 1024;
const STATUS_FRAMES = 16;
/** Where a runner stream must show its first status or event line, as the broker's parser reads it. */
const PREAMBLE_BYTES = 64 * 1024;

export const headLimit = (cap: number) => Math.floor(cap / 2);

/** Smaller caps would keep less than a runner's `starting` line and a few events. */
export const MIN_OUTPUT_CAP = 64 * 1024;

/** Where the head ends: after the last newline at or before cap/2 among `bytes` (the file's start). */
export function headEnd(bytes: Uint8Array, cap: number): number {
  const limit = Math.min(bytes.length, headLimit(cap));
  for (let i = limit - 1; i >= 0; i--) if (bytes[i] === 0x0a) return i + 1;
  return 0;
}

type Kind = "frame" | "cuttable";
interface Item {
  start: number;
  end: number;
  kind: Kind;
  /** A runner event's counter, when the line was parsed. */
  counter?: number;
}

const decoder = new TextDecoder();

/**
 * Splits a stream into items: lines, and a zipfile's base64 data (no newlines in it, and followed
 * by the eof line without one). Feed chunks in order; `finish` flushes the last partial line.
 */
class Items {
  private mode: "unknown" | "runner" | "lines" = "unknown";
  private blob = 0;
  private statusFrames = 0;
  private zipFrames = 0;
  private line: Uint8Array[] = [];
  private lineBytes = 0;
  private lineStart = 0;
  private at = 0;

  constructor(private readonly emit: (item: Item) => void) {}

  push(chunk: Uint8Array): void {
    let i = 0;
    while (i < chunk.length) {
      if (this.blob > 0) {
        const take = Math.min(this.blob, chunk.length - i);
        this.blob -= take;
        i += take;
        this.at += take;
        if (this.blob === 0) {
          this.emit({ start: this.lineStart, end: this.at, kind: "frame" });
          this.lineStart = this.at;
        }
        continue;
      }
      const nl = chunk.indexOf(0x0a, i);
      const stop = nl < 0 ? chunk.length : nl + 1;
      this.keep(chunk.subarray(i, stop));
      this.at += stop - i;
      i = stop;
      if (nl >= 0) this.endLine();
    }
  }

  finish(): void {
    if (this.at > this.lineStart) this.endLine();
  }

  private keep(part: Uint8Array): void {
    // A copy: the source may reuse its buffer for the next chunk, and a Buffer's slice() is a view.
    if (this.mode !== "lines" && this.lineBytes < PARSE_LIMIT) this.line.push(Uint8Array.prototype.slice.call(part));
    this.lineBytes += part.length;
  }

  private endLine(): void {
    const item: Item = { start: this.lineStart, end: this.at, kind: "cuttable" };
    // Plain output is never parsed once it is known not to be a runner stream.
    const json = this.mode !== "lines" && this.lineBytes <= PARSE_LIMIT ? parseObject(this.line) : null;
    if (this.mode === "unknown") {
      if (json && ("status" in json || "event" in json)) this.mode = "runner";
      else if (this.at > PREAMBLE_BYTES) this.mode = "lines";
    }
    if (this.mode === "runner" && json) {
      if ("zipfile" in json && typeof json.zipfile === "number") {
        // A second zipfile is not framing: its data is then read as lines (and cut like them).
        if (this.zipFrames++ === 0) {
          item.kind = "frame";
          this.blob = 4 * Math.ceil(json.zipfile / 3);
        }
      } else if (("status" in json || "eof" in json) && this.lineBytes <= FRAME_LINE_LIMIT) {
        if (this.statusFrames++ < STATUS_FRAMES) item.kind = "frame";
      } else if (typeof json.counter === "number") item.counter = json.counter;
    }
    this.line = [];
    this.lineBytes = 0;
    if (this.blob > 0) {
      // The zipfile line and its data are one frame: emitted when the data ends.
      return;
    }
    this.emit(item);
    this.lineStart = this.at;
  }

  get runner(): boolean {
    return this.mode === "runner";
  }
}

function parseObject(parts: Uint8Array[]): Record<string, unknown> | null {
  const text = parts.map((p) => decoder.decode(p, { stream: true })).join("") + decoder.decode();
  if (!text.trimStart().startsWith("{")) return null;
  try {
    const value: unknown = JSON.parse(text);
    return value && typeof value === "object" && !Array.isArray(value) ? (value as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

/** The stream's chunks, from the start, each time it is called (two passes). */
export type ChunkSource = () => AsyncIterable<Uint8Array>;

async function scan(source: ChunkSource, onItem: (item: Item) => void): Promise<boolean> {
  const items = new Items(onItem);
  for await (const chunk of source()) items.push(chunk);
  items.finish();
  return items.runner;
}

/** The capped stream after `head` bytes (see headEnd) of a finished output of `size` bytes. */
export async function planCap(source: ChunkSource, size: number, head: number, cap: number): Promise<CapPlan> {
  const tail = cap - headLimit(cap);
  let cuttable = 0;
  await scan(source, (item) => {
    if (item.start >= head && item.kind === "cuttable") cuttable += item.end - item.start;
  });
  if (cuttable <= tail) return { pieces: size > head ? [{ from: head, to: size }] : [], cut: null };
  const toDrop = cuttable - tail;
  const pieces: CapPlan["pieces"] = [];
  let dropped = 0;
  let lines = 0;
  let markerAt = -1;
  let counter: number | undefined;
  const add = (from: number, to: number) => {
    const last = pieces.at(-1);
    if (last && "to" in last && last.to === from) last.to = to;
    else pieces.push({ from, to });
  };
  const runner = await scan(source, (item) => {
    if (item.end <= head) return;
    if (item.kind === "cuttable" && dropped < toDrop) {
      if (markerAt < 0) {
        markerAt = pieces.length;
        counter = item.counter;
      }
      dropped += item.end - item.start;
      lines += 1;
      return;
    }
    add(Math.max(item.start, head), item.end);
  });
  pieces.splice(markerAt, 0, { text: marker(runner, { bytes: dropped, lines }, counter) });
  return { pieces, cut: { bytes: dropped, lines } };
}

/** The line that stands for what was cut: a runner event for `ansible-runner process`, else text. */
export function marker(runner: boolean, cut: { bytes: number; lines: number }, counter = 0): Uint8Array {
  const what = `${cut.lines} ${runner ? "event" : "line"}${cut.lines === 1 ? "" : "s"} (${cut.bytes} bytes)`;
  const note = `[mesh-agent: output cap: ${what} cut here; the head and the tail are kept]`;
  if (!runner) return new TextEncoder().encode(`${note}\n`);
  // A counter the cut freed, and a uuid no runner makes (version nibble 0): its job_events file is its own.
  const uuid = `00000000-0000-0000-0000-${counter.toString(16).padStart(12, "0").slice(-12)}`;
  return new TextEncoder().encode(
    `${JSON.stringify({ uuid, counter, event: "verbose", stdout: note, start_line: 0, end_line: 0, event_data: {} })}\n`,
  );
}
