import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import type { WorkCommand } from "../../agent/config.js";
import { EXIT_FILE, type Exit, NO_EXIT_STATUS, parseExitFile } from "../../agent/exit-file.js";
import { type ProcessIdentity, identifyProcess, isSameProcess, parseProcStat } from "../../agent/proc-identity.js";
import {
  PROCESS_GONE,
  type Recovery,
  SpoolRecord,
  START_UNRECORDED,
  type UnitRecord,
  decideOnClosed,
  decideRecovery,
  newRecord,
  scanSpool,
  writeRecord,
} from "../../agent/spool.js";

const work: WorkCommand = {
  worktype: "sh",
  command: "sh",
  params: "-c",
  allowruntimeparams: true,
  verifysignature: false,
  envallow: [],
};
const proc: ProcessIdentity = { pid: 4242, startTime: 54532, bootId: "boot-a" };
const record = (change: Partial<UnitRecord> = {}): UnitRecord => ({ ...newRecord("AbCd1234", work), ...change });
const started = record({ phase: "started", process: proc, startedAt: "2026-01-01T00:00:00.000Z" });
const lost = (error: string): Recovery => ({ action: "report", work, exit: { exitCode: null, signal: null, error } });

describe("parseProcStat", () => {
  it("reads the state (field 3) and start time (field 22)", () => {
    const line =
      "12691 (cat) R 12689 12689 6492 0 -1 4194304 99 0 0 0 0 0 0 0 20 0 1 0 54532 3133440 392 18446744073709551615";
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

  it("refuses a line with no command name, or an empty state field", () => {
    // Full length, so only the missing ")" (or the empty state) can be why it is refused.
    expect(
      parseProcStat("12691 cat R 12689 12689 6492 0 -1 4194304 99 0 0 0 0 0 0 0 20 0 1 0 54532 3133440"),
    ).toBeNull();
    expect(
      parseProcStat("12691 (cat)  12689 12689 6492 0 -1 4194304 99 0 0 0 0 0 0 0 20 0 1 0 54532 3133440"),
    ).toBeNull();
  });
});

describe("isSameProcess", () => {
  it.each([
    ["the same start time and boot", proc, "boot-a", { state: "S", startTime: 54532 }, true],
    ["no such PID", proc, "boot-a", null, false],
    ["a zombie", proc, "boot-a", { state: "Z", startTime: 54532 }, false],
    ["dead (X)", proc, "boot-a", { state: "X", startTime: 54532 }, false],
    [
      "no boot id recorded: the start time decides",
      { ...proc, bootId: null },
      "boot-b",
      { state: "S", startTime: 54532 },
      true,
    ],
    ["no boot id readable now: the start time decides", proc, null, { state: "S", startTime: 54532 }, true],
    [
      "no start time recorded, one readable now: existence",
      { ...proc, startTime: null },
      "boot-a",
      { state: "S", startTime: 777 },
      true,
    ],
    ["a reused PID (other start time)", proc, "boot-a", { state: "S", startTime: 60000 }, false],
    ["another boot, even with the same start time", proc, "boot-b", { state: "S", startTime: 54532 }, false],
    [
      "no start time recorded (no /proc): existence",
      { ...proc, startTime: null, bootId: null },
      null,
      { state: "?", startTime: null },
      true,
    ],
  ] as const)("%s", (_name, recorded, bootId, stat, same) => {
    expect(isSameProcess(recorded, bootId, stat)).toBe(same);
  });
});

describe("parseExitFile", () => {
  it.each([
    ['{"code":0,"signal":null}', { exitCode: 0, signal: null, error: null }],
    ['{"code":130,"signal":null}', { exitCode: 130, signal: null, error: null }],
    ['{"code":null,"signal":"SIGINT"}', { exitCode: null, signal: "SIGINT", error: null }],
    ['{"code":null,"signal":"SIGKILL"}', { exitCode: null, signal: "SIGKILL", error: null }],
    [
      '{"code":null,"signal":null,"error":"cannot start x: spawn x EACCES"}',
      { exitCode: null, signal: null, error: "cannot start x: spawn x EACCES" },
    ],
  ])("reads %s", (text, exit) => {
    expect(parseExitFile(text)).toEqual(exit);
  });

  it.each([
    ["empty (a crash before the fsync)", ""],
    ["truncated", '{"code":13'],
    ["a bare status", "0"],
    ["neither code nor signal", '{"code":null,"signal":null}'],
    ["both code and signal", '{"code":1,"signal":"SIGINT"}'],
    ["an error with a code", '{"code":127,"signal":null,"error":"x"}'],
    ["an empty error", '{"code":null,"signal":null,"error":""}'],
    ["a code out of range", '{"code":256,"signal":null}'],
    ["a negative code", '{"code":-1,"signal":null}'],
    ["an unknown signal", '{"code":null,"signal":"SIGNOPE"}'],
    ["a signal number", '{"code":null,"signal":9}'],
    ["a signal name in an array", '{"code":null,"signal":["SIGINT"]}'],
    ["null", "null"],
    ["an unknown field", '{"code":0,"signal":null,"extra":1}'],
  ])("reads %s as no status", (_name, text) => {
    expect(parseExitFile(text)).toBeNull();
  });
});

describe("decideRecovery", () => {
  const status = (exitCode: number | null, signal: string | null = null): Exit => ({ exitCode, signal, error: null });
  it.each<[string, UnitRecord | null, Exit | null, boolean, Recovery]>([
    ["no record", null, null, false, { action: "drop", reason: "no readable unit.json" }],
    ["never started", record(), null, false, { action: "rerun", work }],
    ["ended while the agent was down", started, status(0), false, { action: "report", work, exit: status(0) }],
    [
      "exit file written, supervisor not yet gone",
      started,
      status(3),
      true,
      { action: "report", work, exit: status(3) },
    ],
    [
      "killed by a signal while the agent was down",
      started,
      status(null, "SIGTERM"),
      false,
      { action: "report", work, exit: status(null, "SIGTERM") },
    ],
    [
      "could not start while the agent was down",
      started,
      { exitCode: null, signal: null, error: "cannot start x: spawn x ENOENT" },
      false,
      lost("cannot start x: spawn x ENOENT"),
    ],
    ["still running", started, null, true, { action: "adopt", work, process: proc, supervisor: null }],
    [
      "ended, its supervisor yet to record it",
      { ...started, supervisor: { ...proc, pid: 4243 } },
      null,
      true,
      { action: "adopt", work, process: proc, supervisor: { ...proc, pid: 4243 } },
    ],
    ["killed with the agent", started, null, false, lost(PROCESS_GONE)],
    ["killed while starting", record({ phase: "starting" }), null, false, lost(START_UNRECORDED)],
    [
      "started and ended while starting was recorded",
      record({ phase: "starting" }),
      status(1),
      false,
      { action: "report", work, exit: status(1) },
    ],
  ])("%s", (_name, rec, exit, running, expected) => {
    expect(decideRecovery(rec, exit, running)).toEqual(expected);
  });

  it("every lost-process detail starts with 'agent restarted'", () => {
    for (const detail of [PROCESS_GONE, START_UNRECORDED, NO_EXIT_STATUS]) expect(detail).toMatch(/^agent restarted/);
  });
});

describe("decideOnClosed", () => {
  // [broker's state, broker holds the exit, the command ran here, what the agent does with its spool]
  it.each([
    ["Released", false, true, "drop"],
    ["Released", false, false, "drop"],
    ["Succeeded", true, true, "drop"],
    ["Canceled", true, true, "drop"],
    ["Failed", true, true, "drop"],
    // Judged while the node was away: what it finished is kept until the broker stores it.
    ["Failed", false, true, "report"],
    ["Canceled", false, true, "report"],
    // Never ran here (canceled or expired before it started): nothing finished to keep.
    ["Failed", false, false, "drop"],
    ["Canceled", false, false, "drop"],
  ] as const)("%s, exit recorded %s, ran %s: %s", (state, exitRecorded, ran, fate) => {
    expect(decideOnClosed(state, exitRecorded, ran)).toBe(fate);
  });
});

describe("writeRecord", () => {
  it("writes a unit's first record in place and replaces it whole after, leaving no temporary file", async () => {
    const dir = await mkdtemp(join(tmpdir(), "mesh-record-"));
    try {
      const first = record({ phase: "starting" });
      await writeRecord(dir, first);
      expect(await readdir(dir)).toEqual(["unit.json"]);
      expect(JSON.parse(await readFile(join(dir, "unit.json"), "utf8"))).toEqual(first);
      await writeRecord(dir, started);
      expect(await readdir(dir)).toEqual(["unit.json"]);
      expect(JSON.parse(await readFile(join(dir, "unit.json"), "utf8"))).toEqual(started);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe("SpoolRecord", () => {
  it("lets a unit's directory be removed while a save is under way: close waits for it, later saves do nothing", async () => {
    const dir = await mkdtemp(join(tmpdir(), "mesh-record-"));
    try {
      const spool = new SpoolRecord(dir, record());
      await spool.save({ phase: "starting" });
      // The `started` save of a short command, still syncing as its unit closes (seen in the bench:
      // the rename landed in the directory being removed, rm failed ENOTEMPTY, the agent crashed).
      const saving = spool.save({ phase: "started", process: proc });
      await spool.close();
      expect(await readdir(dir)).toEqual(["unit.json"]);
      await rm(dir, { recursive: true });
      await saving;
      await spool.save({ phase: "started" });
      await expect(readdir(dir)).rejects.toMatchObject({ code: "ENOENT" });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("saves one after another, so the last change is what unit.json holds", async () => {
    const dir = await mkdtemp(join(tmpdir(), "mesh-record-"));
    try {
      const spool = new SpoolRecord(dir, record());
      await Promise.all([spool.save({ phase: "starting" }), spool.save({ phase: "started", process: proc })]);
      expect(JSON.parse(await readFile(join(dir, "unit.json"), "utf8"))).toMatchObject({
        phase: "started",
        process: proc,
      });
      expect(await readdir(dir)).toEqual(["unit.json"]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("tells the caller a save failed and still makes the next one", async () => {
    const dir = await mkdtemp(join(tmpdir(), "mesh-record-"));
    try {
      const spool = new SpoolRecord(join(dir, "missing"), record());
      await expect(spool.save()).rejects.toMatchObject({ code: "ENOENT" });
      await mkdir(join(dir, "missing"));
      await spool.save({ phase: "starting" });
      expect(JSON.parse(await readFile(join(dir, "missing", "unit.json"), "utf8")).phase).toBe("starting");
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
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
    await spool("finished", started, '{"code":0,"signal":null}');
    await spool("badexit1", { ...started, process: self }, "0");
    const gone = { ...self, startTime: (self.startTime ?? 0) + 1 };
    await spool("gone1234", { ...started, process: gone });
    // The command is gone, but the supervisor that would record its end still runs.
    await spool("tobetold", { ...started, process: gone, supervisor: self });
    // Written by an agent whose records had no supervisor field.
    const { supervisor: _none, ...older } = { ...started, unitId: "olderrec", process: self };
    await spool("olderrec", JSON.stringify(older));
    await spool("assigned", record());
    await spool("garbled1", "{not json");
    await spool("other-id", record());
    await spool("wrongid1", JSON.stringify(record()));
    const found = Object.fromEntries((await scanSpool(units)).map((u) => [u.unitId, u.recovery.action]));
    expect(found).toEqual({
      running1: "adopt",
      badexit1: "adopt",
      finished: "report",
      gone1234: "report",
      tobetold: "adopt",
      olderrec: "adopt",
      assigned: "rerun",
      garbled1: "drop",
      wrongid1: "drop",
    });
  });

  it("finds nothing in a work dir that has no units yet", async () => {
    expect(await scanSpool(join(tmpdir(), "mesh-spool-none", "units"))).toEqual([]);
  });
});
