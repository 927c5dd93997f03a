/**
 * Warm starts (a work type's `warmstart`): one instance of the command started ahead of need, in a
 * directory of its own under workDir/warm/, waiting on a FIFO for its stdin. The next unit of that
 * work type whose command line is the same takes it: the directory becomes the unit's (renamed; the
 * supervisor's paths are relative to the command's directory and follow, supervise.ts) and the unit's payload is fed
 * into the FIFO as it arrives, as for an early start (stdin-feed.ts). For `ansible-runner worker`
 * this takes Python's and ansible-runner's imports (~0.4 s of CPU) off the unit's path.
 *
 * Only for commands that read a self-delimiting stream (config.ts streamsPayload): until a unit
 * comes the command holds an empty stdin, and if the agent dies first it reads a cut (empty) one,
 * on which such a command does nothing. A waiting instance is nobody's unit and not in the spool;
 * the agent empties workDir/warm/ when it starts. An instance that a dead agent left has read the
 * end of its stdin and exited, or will once it reads it; one that is not reading it yet (still
 * starting, or a command that does something else first) would live on, nobody's: its process
 * identity is kept in its directory (WARM_PROCESS) and the next start kills its group first.
 *
 * The next instance starts once the one taken has exited, or REFILL_AFTER_MS after the take:
 * started at once, its startup would compete for the CPU with the unit just handed over. One that
 * exits while waiting (killed, a broken install) is started again after a delay that doubles up to
 * MAX_RETRY_MS, so a command that cannot start does not loop.
 */
import { mkdir, readFile, readdir, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { type Logger, errorMessage } from "../shared/node/log.js";
import type { CommandLine } from "./command-args.js";
import type { WorkCommand } from "./config.js";
import type { Exit } from "./exit-file.js";
import { readExitFile } from "./exit-file.js";
import { ProcessIdentity, isRunning } from "./proc-identity.js";
import { type RunningProcess, prepareProcess } from "./process.js";
import { WORK_DIR } from "./spool.js";
import { STDIN_FIFO, StdinFeed } from "./stdin-feed.js";
import type { Supervisor } from "./supervisor.js";

export const REFILL_AFTER_MS = 10_000;
const FIRST_RETRY_MS = 1_000;
const MAX_RETRY_MS = 60_000;
/** In a waiting instance's directory: its command's identity, for the next start of the agent to end its group. */
export const WARM_PROCESS = "warm-process.json";
/** A waiting instance let go: SIGKILL after this if the end of its stdin did not end it. */
const DISCARD_GRACE_MS = 5_000;

/** A command started ahead, waiting for a unit. */
export interface WarmProcess {
  /** Its directory now: under workDir/warm/ until moveTo. */
  readonly dir: string;
  readonly process: RunningProcess;
  /** The command's, and the supervisor's that records its exit: what the unit's record names. */
  readonly identity: ProcessIdentity;
  readonly supervisor: ProcessIdentity | null;
  /** Its stdin, open: what is written reaches the command. */
  readonly feed: StdinFeed;
  /** Makes `unitDir` (replaced if it exists) its directory. */
  moveTo(unitDir: string): Promise<void>;
  /** Lets it go: its stdin ends, it is killed after a grace if still there, its directory removed. */
  discard(): Promise<void>;
}

export interface WarmOptions {
  /** workDir/warm: emptied at start. */
  dir: string;
  workCommands: readonly WorkCommand[];
  /** The command line a unit without runtime params gets (command-args.ts). */
  lineFor: (work: WorkCommand) => CommandLine | { error: string };
  log: Logger;
  /** The agent's supervisor, which runs it (supervisor.ts). */
  supervisor: Supervisor;
}

interface Slot {
  work: WorkCommand;
  ready: WarmProcess | null;
  /** Its command line, to compare with a unit's. */
  key: string | null;
  starting: boolean;
  retryMs: number;
  timer: NodeJS.Timeout | null;
}

const lineKey = (line: CommandLine) =>
  JSON.stringify([line.command, line.args, Object.entries(line.env).sort(([a], [b]) => (a < b ? -1 : 1))]);

export class WarmPool {
  private readonly slots = new Map<string, Slot>();
  private count = 0;
  private stopped = false;

  constructor(private readonly opts: WarmOptions) {}

  /** Empties workDir/warm/ and starts one instance for each work type that asks for it. */
  async start(): Promise<void> {
    await this.endLeftOver();
    // A killed instance's supervisor may still record its exit in there: rm retries ENOTEMPTY. If
    // it still fails, the instances of this run take names of their own and the agent goes on.
    await rm(this.opts.dir, { recursive: true, force: true, maxRetries: 10, retryDelay: 50 }).catch((error) =>
      this.opts.log.warn("warm:not-emptied", { dir: this.opts.dir, error: String(error) }),
    );
    for (const work of this.opts.workCommands) {
      if (!work.warmstart) continue;
      const slot: Slot = { work, ready: null, key: null, starting: false, retryMs: FIRST_RETRY_MS, timer: null };
      this.slots.set(work.worktype, slot);
      this.fill(slot);
    }
  }

  /** The waiting instance of `work` if it runs `line`, else null (a unit with runtime params, say). */
  take(work: WorkCommand, line: CommandLine): WarmProcess | null {
    const slot = this.slots.get(work.worktype);
    const warm = slot?.ready;
    if (!slot || !warm) return null;
    if (slot.key !== lineKey(line)) return null;
    slot.ready = null;
    slot.retryMs = FIRST_RETRY_MS;
    this.later(slot, REFILL_AFTER_MS);
    void warm.process.exited.then(() => this.fill(slot));
    return warm;
  }

  /** Lets every waiting instance go and starts no more; resolves once they are gone. */
  async stop(): Promise<void> {
    this.stopped = true;
    const waiting: WarmProcess[] = [];
    for (const slot of this.slots.values()) {
      if (slot.timer) clearTimeout(slot.timer);
      if (slot.ready) waiting.push(slot.ready);
      slot.ready = null;
    }
    await Promise.all(waiting.map((warm) => warm.discard()));
  }

  /** Kills the process group of each instance an earlier run left waiting that is still there (see above). */
  private async endLeftOver(): Promise<void> {
    const entries = await readdir(this.opts.dir).catch(() => []);
    for (const entry of entries) {
      const identity = await readLeftOver(join(this.opts.dir, entry));
      if (!identity || !(await isRunning(identity))) continue;
      this.opts.log.warn("warm:left-over", { pid: identity.pid, dir: entry });
      try {
        process.kill(-identity.pid, "SIGKILL");
      } catch {
        // Gone meanwhile.
      }
    }
  }

  private later(slot: Slot, ms: number): void {
    if (slot.timer) clearTimeout(slot.timer);
    slot.timer = setTimeout(() => this.fill(slot), ms);
    // Never what keeps the agent alive.
    slot.timer.unref();
  }

  private fill(slot: Slot): void {
    if (this.stopped || slot.ready || slot.starting) return;
    if (slot.timer) clearTimeout(slot.timer);
    slot.timer = null;
    slot.starting = true;
    const { log } = this.opts;
    this.startOne(slot)
      .catch((error) => {
        log.warn("warm:start-failed", { worktype: slot.work.worktype, error: String(error) });
        return null;
      })
      .then((warm) => {
        slot.starting = false;
        if (warm && this.stopped) return void warm.discard();
        if (!warm) return this.retry(slot);
        slot.ready = warm;
        log.info("warm:ready", { worktype: slot.work.worktype, pid: warm.identity.pid });
        void warm.process.exited.then((exit) => {
          if (slot.ready !== warm) return; // taken: it is a unit's now
          slot.ready = null;
          log.warn("warm:exited", { worktype: slot.work.worktype, ...exit });
          void warm.discard().then(() => this.retry(slot));
        });
      });
  }

  private retry(slot: Slot): void {
    if (this.stopped) return;
    this.later(slot, slot.retryMs);
    slot.retryMs = Math.min(slot.retryMs * 2, MAX_RETRY_MS);
  }

  private async startOne(slot: Slot): Promise<WarmProcess | null> {
    const line = this.opts.lineFor(slot.work);
    if ("error" in line) throw new Error(line.error);
    slot.key = lineKey(line);
    let dir = join(this.opts.dir, `${process.pid}-${++this.count}`);
    await mkdir(join(dir, WORK_DIR), { recursive: true, mode: 0o700 });
    const feed = new StdinFeed(join(dir, STDIN_FIFO));
    await feed.create();
    const prepared = await prepareProcess({
      ...line,
      unitId: `warm-${this.count}`,
      spoolDir: dir,
      stdinPath: feed.path,
      stdoutPath: join(dir, "stdout"),
    });
    // Answered once the command runs, which is after the supervisor's open of the FIFO returned:
    // so the writing end is opened meanwhile (feed.connect), or that open would wait for ever.
    const connecting = feed.connect();
    const started = await prepared.start(this.opts.supervisor);
    const removeDir = () => rm(dir, { recursive: true, force: true });
    const identity = await started.identity;
    // Could not start (not found on PATH): its exit says why.
    if (started.pid === null || identity === null) {
      feed.stop();
      const exit = await started.exited;
      await removeDir();
      throw new Error(exit.error ?? "cannot start");
    }
    // The exit file is where the directory is by then (process.ts reads where it was first).
    const exited: Promise<Exit> = started.exited.then(async (exit) => (await readExitFile(dir)) ?? exit);
    const running: RunningProcess = {
      pid: started.pid,
      identity: Promise.resolve(identity),
      exited,
      cancel: (grace) => started.cancel(grace),
    };
    const connected = await Promise.race([connecting, exited.then(() => false)]);
    // Never rejects (callers drop it with void): a directory left behind is emptied at the next start.
    const discard = async () => {
      feed.stop();
      running.cancel(DISCARD_GRACE_MS);
      await exited;
      await removeDir().catch((error) => this.opts.log.warn("warm:not-removed", { dir, error: errorMessage(error) }));
    };
    if (!connected) {
      await discard();
      throw new Error(`${line.command} ended before it took its stdin`);
    }
    // Before the FIFO opened, the supervisor watched for its agent's death (supervise.ts); from now on
    // the agent's next start does, by the command's identity (it leads its own process group).
    await writeFile(join(dir, WARM_PROCESS), JSON.stringify(identity.process), { mode: 0o600 }).catch(async (error) => {
      await discard();
      throw error;
    });
    return {
      get dir() {
        return dir;
      },
      process: running,
      identity: identity.process,
      supervisor: identity.supervisor,
      feed,
      async moveTo(unitDir: string) {
        await rm(unitDir, { recursive: true, force: true });
        await rename(dir, unitDir);
        dir = unitDir;
        // The unit's record names the process from here on.
        await rm(join(unitDir, WARM_PROCESS), { force: true });
      },
      discard,
    };
  }
}

/** The identity a waiting instance left in its directory, as spool.ts reads a record: null if none or unreadable. */
async function readLeftOver(dir: string): Promise<ProcessIdentity | null> {
  try {
    const parsed = ProcessIdentity.safeParse(JSON.parse(await readFile(join(dir, WARM_PROCESS), "utf8")));
    return parsed.success ? parsed.data : null;
  } catch {
    return null;
  }
}
