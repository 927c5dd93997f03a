/**
 * A unit's results as the agent sends them when its work type has an output cap (shared/output-cap.ts):
 * the spool file itself (offsets are file offsets) up to the head while the command runs, then the
 * planned stream — head, what the plan keeps, the marker — once it has ended. Without a cap, the
 * spool file as it is. The spool file is never changed: a restarted agent plans the same stream.
 */
import { type CapPlan, headLimit, planCap } from "../shared/output-cap.js";

const SCAN_CHUNK = 1 << 20;

/** What the source reads the results file through (a FileHandle, or a test's fake). */
export interface PositionalReader {
  read(buffer: Buffer, offset: number, length: number, position: number): Promise<{ bytesRead: number }>;
}

export class ResultsSource {
  private head = 0;
  /** How far the head's search for a line end has read the file. */
  private searched = 0;
  private plan: CapPlan | null = null;

  constructor(readonly cap: number | null) {}

  /** What was cut, once planned; null without a cap or when the output fit. */
  get cut(): CapPlan["cut"] {
    return this.plan?.cut ?? null;
  }

  /** Reads up to `length` stream bytes at `at` into `buffer`; 0 when none are available (yet). */
  async read(
    file: PositionalReader,
    buffer: Buffer,
    length: number,
    at: number,
    ended: { size: () => Promise<number> } | null,
  ): Promise<number> {
    if (this.cap === null) return (await file.read(buffer, 0, length, at)).bytesRead;
    await this.findHead(file);
    if (at < this.head) return (await file.read(buffer, 0, Math.min(length, this.head - at), at)).bytesRead;
    if (!ended) return 0;
    const plan = await this.planned(file, await ended.size());
    let offset = this.head;
    for (const piece of plan.pieces) {
      const pieceLength = "text" in piece ? piece.text.length : piece.to - piece.from;
      if (at < offset + pieceLength) {
        const skip = at - offset;
        const n = Math.min(length, pieceLength - skip);
        if ("text" in piece) {
          buffer.set(piece.text.subarray(skip, skip + n));
          return n;
        }
        return (await file.read(buffer, 0, n, piece.from + skip)).bytesRead;
      }
      offset += pieceLength;
    }
    return 0;
  }

  /** The whole stream's size, once the command has ended (`fileSize`: the spool file's). */
  async size(file: PositionalReader, fileSize: number): Promise<number> {
    if (this.cap === null) return fileSize;
    await this.findHead(file);
    const plan = await this.planned(file, fileSize);
    return this.head + plan.pieces.reduce((sum, p) => sum + ("text" in p ? p.text.length : p.to - p.from), 0);
  }

  /** Moves the head to the last line end at or before cap/2 the file holds so far. */
  private async findHead(file: PositionalReader): Promise<void> {
    const limit = headLimit(this.cap ?? 0);
    if (this.searched >= limit) return;
    const buffer = Buffer.allocUnsafe(Math.min(SCAN_CHUNK, limit));
    while (this.searched < limit) {
      const { bytesRead } = await file.read(buffer, 0, Math.min(buffer.length, limit - this.searched), this.searched);
      if (bytesRead === 0) return;
      const nl = buffer.subarray(0, bytesRead).lastIndexOf(0x0a);
      if (nl >= 0) this.head = this.searched + nl + 1;
      this.searched += bytesRead;
    }
  }

  private async planned(file: PositionalReader, size: number): Promise<CapPlan> {
    if (this.plan) return this.plan;
    const chunks = async function* () {
      const buffer = Buffer.allocUnsafe(SCAN_CHUNK);
      for (let at = 0; at < size; ) {
        const { bytesRead } = await file.read(buffer, 0, Math.min(SCAN_CHUNK, size - at), at);
        if (bytesRead === 0) break;
        yield buffer.subarray(0, bytesRead);
        at += bytesRead;
      }
    };
    this.plan = await planCap(chunks, size, this.head, this.cap ?? 0);
    return this.plan;
  }
}
