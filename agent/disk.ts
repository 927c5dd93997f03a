/**
 * The agent's view of its work dir's free space: sampled with statfs every few seconds, sent to the
 * broker in hello and again when it crosses --min-free (at once) or drifts far from the last report
 * (at most once a minute), so the control link stays nearly silent. Also tells a write that failed
 * for want of space from other faults, so a unit's detail can name it.
 */
import { type FileHandle, statfs } from "node:fs/promises";
import type { DiskSpace } from "../shared/disk.js";
import { isLowDisk, lowDiskReason } from "../shared/disk.js";
import type { Logger } from "../shared/node/log.js";
import type { Exit } from "./exit-file.js";

/** How often the work dir is sampled. */
export const DISK_CHECK_MS = 5_000;
/** A drift without crossing --min-free is reported at most this often… */
const DRIFT_REPORT_MS = 60_000;
/** …and only when free space moved by this fraction of the last report (or 64 MiB, whichever is more). */
const DRIFT_FRACTION = 0.1;
const DRIFT_MIN_BYTES = 64 * 1024 * 1024;
/**
 * Free space below which a failed command is taken to have hit a full disk: a write that fails with
 * ENOSPC leaves less than one block, far under this; a disk this full fails anything that writes.
 */
export const FULL_BYTES = 1024 * 1024;

export async function sampleDisk(dir: string, minFreeBytes: number): Promise<DiskSpace | null> {
  try {
    const fs = await statfs(dir);
    return { freeBytes: fs.bavail * fs.bsize, minFreeBytes };
  } catch {
    return null;
  }
}

/** Whether `now` should be sent, the last report being `last` from `elapsedMs` ago. */
export function shouldReport(last: DiskSpace | null, now: DiskSpace, elapsedMs: number): boolean {
  if (!last) return true;
  if (isLowDisk(last) !== isLowDisk(now) || last.minFreeBytes !== now.minFreeBytes) return true;
  const drift = Math.abs(now.freeBytes - last.freeBytes);
  return elapsedMs >= DRIFT_REPORT_MS && drift >= Math.max(DRIFT_MIN_BYTES, DRIFT_FRACTION * last.freeBytes);
}

/** Where disk reports go: the control link, once the broker has welcomed this node on it. */
export interface DiskLink {
  welcomed(): boolean;
  send(disk: DiskSpace): void;
}

/** The work dir's free space as last sampled, and as last told to the broker (on this link). */
export class DiskWatch {
  /** Null until a sample succeeds: hello then carries none. */
  current: DiskSpace | null = null;
  private sent: { disk: DiskSpace; at: number } | null = null;
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly dir: string,
    private readonly minFreeBytes: number,
    private readonly log: Logger,
    private readonly link: DiskLink,
  ) {}

  /** Samples now, then every DISK_CHECK_MS until stop(). */
  async start(): Promise<void> {
    await this.check();
    this.timer = setInterval(() => void this.check(), DISK_CHECK_MS);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  /** A hello on a new link carried `disk` (or none): later reports are judged against it. */
  toldInHello(disk: DiskSpace | null): void {
    this.sent = disk ? { disk, at: Date.now() } : null;
  }

  /** Samples the work dir's free space; tells the broker when it crossed --min-free or drifted far. */
  async check(): Promise<void> {
    const disk = await sampleDisk(this.dir, this.minFreeBytes);
    if (!disk) return;
    if (isLowDisk(disk) !== isLowDisk(this.current)) {
      if (isLowDisk(disk))
        this.log.warn("disk:low", {
          message: `${lowDiskReason(disk)}: this node takes no units until space is freed`,
          dir: this.dir,
        });
      else if (this.current) this.log.info("disk:ok", { freeBytes: disk.freeBytes, minFreeBytes: disk.minFreeBytes });
    }
    this.current = disk;
    if (!this.link.welcomed()) return;
    if (shouldReport(this.sent?.disk ?? null, disk, Date.now() - (this.sent?.at ?? 0))) {
      this.link.send(disk);
      this.sent = { disk, at: Date.now() };
    }
  }
}

/** A write refused for want of space (or quota), as Node reports it. */
export function isDiskFull(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException | null)?.code;
  return code === "ENOSPC" || code === "EDQUOT";
}

/** The unit's detail for a local failure while `doing` something: names a full disk when it was one. */
export function localFailureDetail(nodeId: string, doing: string, error: unknown): string {
  if (isDiskFull(error)) return `node ${nodeId}: no space left on device while ${doing}`;
  return `node ${nodeId}: agent error while ${doing}: ${error instanceof Error ? error.message : String(error)}`;
}

/**
 * Writes all of `data` at `position`. A write to a nearly full file system may write only part of
 * it and still succeed (seen on tmpfs: 147,456 of 600,000 bytes, no error); the rest is written
 * again, which then fails ENOSPC, so a payload is never stored with a hole in it.
 */
export async function writeAll(file: Pick<FileHandle, "write">, data: Uint8Array, position: number): Promise<void> {
  for (let done = 0; done < data.byteLength; ) {
    const { bytesWritten } = await file.write(data, done, data.byteLength - done, position + done);
    if (bytesWritten === 0)
      throw Object.assign(new Error("no space left on device (a write made no progress)"), { code: "ENOSPC" });
    done += bytesWritten;
  }
}

/**
 * The command's own error about a full disk went into the full spool, where nobody reads it: a
 * failure with the work dir's disk full when it ended is reported as such, with its status. A
 * cancel (or a stop after the unit was judged) ends the command by the agent's own signal.
 */
export async function explainExit(exit: Exit, unitDir: string, nodeId: string, canceled: boolean): Promise<Exit> {
  if (exit.error || exit.exitCode === 0 || canceled) return exit;
  const disk = await sampleDisk(unitDir, 0);
  if (!disk || disk.freeBytes >= FULL_BYTES) return exit;
  const status = exit.signal ? `killed by signal ${exit.signal}` : `exit status ${exit.exitCode}`;
  return { ...exit, error: `node ${nodeId}: no space left on device while spooling the output (${status})` };
}
