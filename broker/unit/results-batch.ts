/**
 * Results frames taken in but not yet written, for group commit: the Unit object writes a frame as
 * soon as no write is under way and its turn has come (write-pacer.ts), and the frames that arrive
 * meanwhile (the wait for its turn, its commit, its sync) all together right after it, in one
 * transaction. At a trickle that is a write per frame, a timer's turn later; at full speed it is
 * one commit and one sync per several frames instead of per 1 MiB frame, and the ack waits for the
 * write that leaves nothing pending (one ack a burst: the agent refills its window once it is
 * empty). An ack still covers only committed bytes; what a crash loses is only what was never
 * acknowledged, which the agent still holds in its spool and sends again from the last ack
 * (agent/results-upload.ts). Pending bytes are bounded by the agent's window (RESULTS_WINDOW), as
 * it sends no more unacknowledged.
 */

export interface PendingChunk {
  offset: number;
  data: Uint8Array;
}

export class PendingResults {
  private chunks: PendingChunk[] = [];
  private bytes = 0;
  /** Frames taken and writes made by this instance, for the log (how well frames are grouped). */
  frames = 0;
  writes = 0;
  /** The write under way (it takes every frame that comes meanwhile), or null. */
  writing: Promise<void> | null = null;

  get size(): number {
    return this.bytes;
  }

  /** Where the stream ends counting pending frames, when `durable` bytes are stored. */
  end(durable: number): number {
    return durable + this.bytes;
  }

  /** Takes `data`, which must start at `end(durable)` (the caller plans frames against end()). */
  add(durable: number, offset: number, data: Uint8Array): void {
    if (offset !== this.end(durable))
      throw new Error(`pending results frame at ${offset}, expected ${this.end(durable)}`);
    if (data.byteLength === 0) return;
    this.chunks.push({ offset, data });
    this.frames++;
    this.bytes += data.byteLength;
  }

  /** Everything pending, in order, and empty after. */
  take(): PendingChunk[] {
    const chunks = this.chunks;
    if (chunks.length > 0) this.writes++;
    this.chunks = [];
    this.bytes = 0;
    return chunks;
  }
}
