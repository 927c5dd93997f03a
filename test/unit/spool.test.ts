import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import type { WorkCommand } from "../../agent/config.js";
import {
  EXIT_FILE,
  NO_EXIT_STATUS,
  PROCESS_GONE,
  type ProcessIdentity,
  type Recovery,
  START_UNRECORDED,
  type UnitRecord,
  decideRecovery,
  decodeStatus,
  identifyProcess,
  isSameProcess,
  newRecord,
  parseExitStatus,
  parseProcStat,
  scanSpool,
  writeRecord,
} from "../../agent/spool.js";

const work: WorkCommand = { worktype: "sh", command: "sh", params: "-c", allowruntimeparams: true, verifysignature: false };
const proc: ProcessIdentity = { pid: 4242, startTime: 54532, bootId: "boot-a" };
const record = (change: Partial<UnitRecord> = {}): UnitRecord => ({ ...newRecord("AbCd1234", work), ...change });
const started = record({ phase: "started", process: proc, startedAt: "2026-01-01T00:00:00.000Z" });
const lost = (error: string): Recovery => ({ action: "report", work, exit: { exitCode: null, signal: null, error } });

describe("parseProcStat", () => {
  it("reads the state (field 3) and start time (field 22)", () => {
    const line = "12691 (cat) R 12689 12689 6492 0 -1 4194304 99 0 0 0 0 0 0 0 20 0 1 0 54532 3133440 392 18446744073709551615";
    expect(parseProcStat(line)).toEqual({ state: "R", startTime: 54532 });
  });

  it("is not misled by spaces and parentheses in the command name", () => {
    const line = "7 (a) b (c) S 1 7 7 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 99 0 0";
    expect(parseProcStat(line)).toEqual({ state: "S", startTime: 99 });
  });

  it("refuses truncated or foreign text", () => {
    expect(parseProcStat("")).toBeNull();
    expect(parseProcStat("12 (x) R 1 2 3")).toBeNull();
    expect(parseProcStat("12 (x) R 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 x")).toBeNull();
  });
});

describe("isSameProcess", () => {
  it.each([
    ["the same start time and boot", proc, "boot-a", { state: "S", startTime: 54532 }, true],
    ["no such PID", proc, "boot-a", null, false],
    ["a zombie", proc, "boot-a", { state: "Z", startTime: 54532 }, false],
    ["a reused PID (other start time)", proc, "boot-a", { state: "S", startTime: 60000 }, false],
    ["another boot, even with the same start time", proc, "boot-b", { state: "S", startTime: 54532 }, false],
    ["no start time recorded (no /proc): existence", { ...proc, startTime: null, bootId: null }, null, { state: "?", startTime: null }, true],
  ] as const)("%s", (_name, recorded, bootId, stat, same) => {
    expect(isSameProcess(recorded, bootId, stat)).toBe(same);
  });
});

describe("exit statuses", () => {
  it.each([
    [0, { exitCode: 0, signal: null }],
    [2, { exitCode: 2, signal: null }],
    [128, { exitCode: 128, signal: null }],
    [130, { exitCode: null, signal: "SIGINT" }],
    [134, { exitCode: null, signal: "SIGABRT" }],
    [137, { exitCode: null, signal: "SIGKILL" }],
    [255, { exitCode: 255, signal: null }],
  ])("status %i", (status, decoded) => {
    expect(decodeStatus(status)).toEqual(decoded);
  });

  it("reads only a whole status from the exit file", () => {
    expect(parseExitStatus("0")).toBe(0);
    expect(parseExitStatus("137")).toBe(137);
    expect(parseExitStatus("")).toBeNull();
    expect(parseExitStatus("256")).toBeNull();
    expect(parseExitStatus("1\n")).toBeNull();
    expect(parseExitStatus("-1")).toBeNull();
  });
});

describe("decideRecovery", () => {
  it.each<[string, UnitRecord | null, number | null, boolean, Recovery]>([
    ["no record", null, null, false, { action: "drop", reason: "no readable unit.json" }],
    ["never started", record(), null, false, { action: "rerun", work }],
    ["ended while the agent was down", started, 0, false, { action: "report", work, exit: { exitCode: 0, signal: null, error: null } }],
    ["exit file written, wrapper not yet gone", started, 3, true, { action: "report", work, exit: { exitCode: 3, signal: null, error: null } }],
    ["still running", started, null, true, { action: "adopt", work, process: proc }],
    ["killed with the agent", started, null, false, lost(PROCESS_GONE)],
    ["killed while starting", record({ phase: "starting" }), null, false, lost(START_UNRECORDED)],
    ["started and ended while starting was recorded", record({ phase: "starting" }), 1, false, { action: "report", work, exit: { exitCode: 1, signal: null, error: null } }],
  ])("%s", (_name, rec, status, running, expected) => {
    expect(decideRecovery(rec, status, running)).toEqual(expected);
  });

  it("every lost-process detail starts with 'agent restarted'", () => {
    for (const detail of [PROCESS_GONE, START_UNRECORDED, NO_EXIT_STATUS]) expect(detail).toMatch(/^agent restarted/);
  });
});

describe("scanSpool", () => {
  const dirs: string[] = [];
  afterAll(async () => {
    await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
  });

  it("decides for each unit directory from its files and skips other names", async () => {
    const units = await mkdtemp(join(tmpdir(), "mesh-spool-"));
    dirs.push(units);
    const spool = async (id: string, rec: UnitRecord | string | null, exit?: string) => {
      await mkdir(join(units, id));
      if (typeof rec === "string") await writeFile(join(units, id, "unit.json"), rec);
      else if (rec) await writeRecord(join(units, id), { ...rec, unitId: id });
      if (exit !== undefined) await writeFile(join(units, id, EXIT_FILE), exit);
    };
    const self = await identifyProcess(process.pid);
    await spool("running1", { ...started, process: self });
    await spool("finished", started, "0");
    await spool("gone1234", { ...started, process: { ...self, startTime: (self.startTime ?? 0) + 1 } });
    await spool("assigned", record());
    await spool("garbled1", "{not json");
    await spool("other-id", record());
    await spool("wrongid1", JSON.stringify(record()));
    const found = Object.fromEntries((await scanSpool(units)).map((u) => [u.unitId, u.recovery.action]));
    expect(found).toEqual({ running1: "adopt", finished: "report", gone1234: "report", assigned: "rerun", garbled1: "drop", wrongid1: "drop" });
  });

  it("finds nothing in a work dir that has no units yet", async () => {
    expect(await scanSpool(join(tmpdir(), "mesh-spool-none", "units"))).toEqual([]);
  });
});
