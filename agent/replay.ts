/**
 * The signed units this agent has accepted, so that no signed unit runs twice here even when the
 * broker hands it out again: `<work-dir>/signed-units.json`, `{"version":1,"units":{"<mesh>/<unit id>": exp}}`,
 * mode 0600, replaced atomically. Entries are dropped once their signature has expired, since an
 * expired signature is refused anyway.
 */
import { open, readFile, rename, rm } from "node:fs/promises";
import { z } from "zod";

export const REPLAY_FILE = "signed-units.json";

/** Kept past expiry so that a clock stepped back (an NTP correction) cannot revive a used signature. */
const KEEP_AFTER_EXP_S = 3600;

const CacheFile = z.object({ version: z.literal(1), units: z.record(z.string(), z.number().int()) });

export class ReplayCache {
  private chain: Promise<unknown> = Promise.resolve();

  constructor(readonly path: string) {}

  /**
   * Records `key` as accepted until `exp` (unix seconds). False if it was accepted before. Calls
   * run one at a time, so two runners cannot both claim the same unit.
   */
  claim(key: string, exp: number, nowMs: number): Promise<boolean> {
    const run = this.chain.then(() => this.claimNow(key, exp, Math.floor(nowMs / 1000)));
    this.chain = run.catch(() => undefined);
    return run;
  }

  private async claimNow(key: string, exp: number, now: number): Promise<boolean> {
    const units = await this.read();
    if (Object.hasOwn(units, key)) return false;
    const kept = Object.fromEntries(Object.entries(units).filter(([, until]) => until + KEEP_AFTER_EXP_S > now));
    kept[key] = exp;
    await this.write(kept);
    return true;
  }

  private async read(): Promise<Record<string, number>> {
    let text: string;
    try {
      text = await readFile(this.path, "utf8");
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return {};
      throw error;
    }
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      throw new Error(`${this.path} is not JSON; remove it only if no signed unit is still valid`);
    }
    const parsed = CacheFile.safeParse(json);
    if (!parsed.success)
      throw new Error(`${this.path} is not a signed-units file; remove it only if no signed unit is still valid`);
    return parsed.data.units;
  }

  private async write(units: Record<string, number>): Promise<void> {
    const temp = `${this.path}.${process.pid}.tmp`;
    const file = await open(temp, "w", 0o600);
    try {
      await file.writeFile(JSON.stringify({ version: 1, units }));
      // Durable before the rename: after a crash the file holds the old list or the new, never half.
      await file.sync();
    } finally {
      await file.close();
    }
    try {
      await rename(temp, this.path);
    } catch (error) {
      await rm(temp, { force: true });
      throw error;
    }
  }
}
