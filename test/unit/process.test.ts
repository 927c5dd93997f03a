/**
 * The executor against the built supervisor (dist/, which `npm test` builds first): statuses,
 * signals, arguments, the working directory, one supervisor for many units, and what it does when
 * its agent or itself is gone. The executor is loaded from dist/ as well, so that it finds
 * supervise.js beside itself as it does when installed.
 */
import { type ChildProcess, execFileSync, spawn, spawnSync } from "node:child_process";
import { mkdir, mkdtemp, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from "vitest";
import { EXIT_FILE, NO_EXIT_STATUS, readExitFile } from "../../agent/exit-file.js";
import { identifyProcess, isRunning } from "../../agent/proc-identity.js";
import { WORK_DIR } from "../../agent/spool.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const BUILT = ["process", "supervisor", "spool", "supervise"].map((name) => ({
  source: join(ROOT, "agent", `${name}.ts`),
  built: join(ROOT, "dist/agent", `${name}.js`),
}));
const SUPERVISOR = join(ROOT, "dist/agent/supervise.js");
const { startProcess, adoptProcess, SUPERVISOR_LOST }: typeof import("../../agent/process.js") = await import(
  join(ROOT, "dist/agent/process.js")
);
const { Supervisor, spawnSupervisor }: typeof import("../../agent/supervisor.js") = await import(
  join(ROOT, "dist/agent/supervisor.js")
);

const dirs: string[] = [];
let dir = "";
/** Each test's own supervisor, with the processes it started, so that a test may kill it. */
let supervisor: InstanceType<typeof Supervisor>;
let supervisors: ChildProcess[] = [];

beforeAll(async () => {
  for (const { source, built } of BUILT) {
    const [from, to] = await Promise.all([stat(source), stat(built).catch(() => null)]);
    if (!to || to.mtimeMs < from.mtimeMs)
      throw new Error(`${built} is missing or older than ${source}: run npm run build`);
  }
});

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "mesh-process-"));
  dirs.push(dir);
  await mkdir(join(dir, WORK_DIR));
  await writeFile(join(dir, "payload"), "input\n");
  supervisors = [];
  supervisor = new Supervisor(() => supervisors[supervisors.push(spawnSupervisor()) - 1]!);
});

afterEach(() => {
  supervisor.stop();
});

afterAll(async () => {
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});

let units = 0;
const start = (command: string, args: string[], spoolDir = dir) =>
  startProcess({
    unitId: `unit${units++}`,
    command,
    args,
    spoolDir,
    stdinPath: join(spoolDir, "payload"),
    stdoutPath: join(spoolDir, "stdout"),
    env: { PATH: process.env.PATH ?? "" },
    supervisor,
  });
const results = (spoolDir = dir) => readFile(join(spoolDir, "stdout"), "utf8");

/** Resolves once `path` exists: the command signals readiness by creating it. */
async function appears(path: string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (
      await readFile(path).then(
        () => true,
        () => false,
      )
    )
      return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`${path} never appeared`);
}

const exits = (child: ChildProcess) =>
  new Promise<number | null>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve(child.exitCode);
    else child.once("exit", (code) => resolve(code));
  });
/** Field 4 (parent) and 5 (process group) of a process's /proc stat. */
async function parentAndGroup(pid: number): Promise<[number, number]> {
  const stat = await readFile(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return [Number(fields[1]), Number(fields[2])];
}
/** A gated script: prints `before`, waits until `gate` exists, then runs `after`. */
const gated = (gate: string, before: string, after: string) =>
  `${before}; while [ ! -e ${gate} ]; do sleep 0.02; done; ${after}`;

describe("startProcess", () => {
  it("records the exit status in the spool and reports it", async () => {
    const child = await start("sh", ["-c", "cat; echo err >&2; exit 3"]);
    expect(await child.exited).toEqual({ exitCode: 3, signal: null, error: null });
    expect(await readExitFile(dir)).toEqual({ exitCode: 3, signal: null, error: null });
    expect(await results()).toBe("input\nerr\n");
  });

  it("exit 130 is an exit status, not SIGINT", async () => {
    const child = await start("sh", ["-c", "exit 130"]);
    expect(await child.exited).toEqual({ exitCode: 130, signal: null, error: null });
    expect(await readExitFile(dir)).toEqual({ exitCode: 130, signal: null, error: null });
  });

  it("passes arguments verbatim", async () => {
    const args = ["a b", '"q"', "it's", "$X", "${Y}", "", "*", "x;y", "\\n", " "];
    const child = await start("printf", ["[%s]", ...args]);
    expect((await child.exited).exitCode).toBe(0);
    expect(await results()).toBe(args.map((a) => `[${a}]`).join(""));
  });

  it("runs the command in the spool's work/, where it cannot replace the spool's files", async () => {
    const child = await start("sh", ["-c", "pwd; echo clobbered > exit; echo clobbered > unit.json"]);
    expect(await child.exited).toEqual({ exitCode: 0, signal: null, error: null });
    expect(await results()).toBe(`${join(dir, WORK_DIR)}\n`);
    expect(await readExitFile(dir)).toEqual({ exitCode: 0, signal: null, error: null });
  });

  it("cancel SIGINTs the group: a command with default handling dies of it, the supervisor records that", async () => {
    const ready = join(dir, "ready");
    const child = await start("sh", ["-c", `echo started; touch ${ready}; sleep 60`]);
    await appears(ready);
    child.cancel(30_000);
    expect(await child.exited).toEqual({ exitCode: null, signal: "SIGINT", error: null });
    expect(await readExitFile(dir)).toEqual({ exitCode: null, signal: "SIGINT", error: null });
    expect(await results()).toBe("started\n");
  });

  it("a command that handles the cancel's SIGINT by exiting 130 is reported as exit 130", async () => {
    const ready = join(dir, "ready");
    const child = await start("sh", [
      "-c",
      `trap "echo got-int; exit 130" INT; touch ${ready}; while :; do sleep 0.05; done`,
    ]);
    await appears(ready);
    child.cancel(30_000);
    expect(await child.exited).toEqual({ exitCode: 130, signal: null, error: null });
    expect(await results()).toBe("got-int\n");
  });

  it("a command that ignores SIGINT is killed after the grace, and the supervisor records that", async () => {
    const ready = join(dir, "ready");
    const child = await start("sh", ["-c", `trap "" INT; touch ${ready}; sleep 60`]);
    await appears(ready);
    child.cancel(200);
    expect(await child.exited).toEqual({ exitCode: null, signal: "SIGKILL", error: null });
    expect(await readExitFile(dir)).toEqual({ exitCode: null, signal: "SIGKILL", error: null });
  });

  it("cancel kills, after the grace, what the command left in its group (a background child ignoring SIGINT)", async () => {
    const ready = join(dir, "ready");
    // A non-interactive sh starts `&` children with SIGINT ignored: the cancel's SIGINT ends the
    // command, and its child would outlive the unit.
    const child = await start("sh", ["-c", `sleep 60 & echo $! > ${ready}.pid; touch ${ready}; sleep 60`]);
    await appears(ready);
    const left = Number(await readFile(`${ready}.pid`, "utf8"));
    child.cancel(200);
    expect(await child.exited).toEqual({ exitCode: null, signal: "SIGINT", error: null });
    await vi.waitFor(
      async () => {
        const state = await readFile(`/proc/${left}/stat`, "utf8").catch(() => "");
        expect(state === "" || state.slice(state.lastIndexOf(")") + 2).startsWith("Z")).toBe(true);
      },
      { timeout: 3000, interval: 50 },
    );
  });

  it("a missing command is named plainly and never spawned", async () => {
    const child = await start("no-such-command-here", []);
    expect(child.pid).toBeNull();
    expect(await child.exited).toEqual({
      exitCode: null,
      signal: null,
      error: "cannot start no-such-command-here: not found on PATH",
    });
    expect((await (await start("../payload", [])).exited).error).toBe(
      "cannot start ../payload: not an executable file",
    );
  });

  it("the command gets only the environment in its spec; the supervisor has neither MESH_* nor Node's settings", async () => {
    process.env.NODE_MESH_TEST = "for the agent";
    process.env.MESH_TEST_SECRET = "the agent's";
    try {
      const script =
        'echo "$GIVEN/$MESH_TEST_SECRET/$NODE_MESH_TEST"; tr "\\0" "\\n" < /proc/$PPID/environ | grep -c -e ^NODE_ -e ^MESH_';
      const child = await startProcess({
        unitId: "envtest1",
        command: "sh",
        args: ["-c", script],
        spoolDir: dir,
        stdinPath: join(dir, "payload"),
        stdoutPath: join(dir, "stdout"),
        env: { PATH: process.env.PATH ?? "", GIVEN: "given" },
        supervisor,
      });
      expect(await child.exited).toEqual({ exitCode: 1, signal: null, error: null });
      expect(await results()).toBe("given//\n0\n");
    } finally {
      delete process.env.NODE_MESH_TEST;
      delete process.env.MESH_TEST_SECRET;
    }
  });
});

describe("Supervisor", () => {
  it("runs units at once under one supervisor, each command the leader of its own process group", async () => {
    const gate = join(dir, "gate");
    const other = await mkdtemp(join(tmpdir(), "mesh-process-"));
    dirs.push(other);
    await mkdir(join(other, WORK_DIR));
    await writeFile(join(other, "payload"), "");
    const first = await start("sh", ["-c", gated(gate, "echo one", "exit 3")]);
    const second = await start("sh", ["-c", gated(gate, "echo two", "kill -TERM $$")], other);
    expect(supervisors).toHaveLength(1);
    const supervisorPid = supervisors[0]!.pid!;
    for (const child of [first, second]) {
      expect(await parentAndGroup(child.pid!)).toEqual([supervisorPid, child.pid]);
      expect(await child.identity).toEqual({
        process: await identifyProcess(child.pid!),
        supervisor: await identifyProcess(supervisorPid),
      });
    }
    await writeFile(gate, "");
    expect(await first.exited).toEqual({ exitCode: 3, signal: null, error: null });
    expect(await second.exited).toEqual({ exitCode: null, signal: "SIGTERM", error: null });
    expect([await results(), await results(other)]).toEqual(["one\n", "two\n"]);
  });

  it("once stopped, records and reports what still runs, then exits; it takes nothing more", async () => {
    const gate = join(dir, "gate");
    const child = await start("sh", ["-c", gated(gate, "true", "exit 7")]);
    const gone = exits(supervisors[0]!);
    supervisor.stop();
    await new Promise((r) => setTimeout(r, 100));
    expect(supervisors[0]!.exitCode).toBeNull();
    await writeFile(gate, "");
    expect(await child.exited).toEqual({ exitCode: 7, signal: null, error: null });
    expect(await readExitFile(dir)).toEqual({ exitCode: 7, signal: null, error: null });
    expect(await gone).toBe(0);
    const later = await mkdtemp(join(tmpdir(), "mesh-process-"));
    dirs.push(later);
    await mkdir(join(later, WORK_DIR));
    await writeFile(join(later, "payload"), "");
    const refused = await start("true", [], later);
    expect(refused.pid).toBeNull();
    expect((await refused.exited).error).toMatch(/supervisor ended before it ran the command/);
    expect(supervisors).toHaveLength(1);
  });

  it("killed, its units end as SUPERVISOR_LOST once their command ends, and the next unit gets another", async () => {
    const gate = join(dir, "gate");
    const child = await start("sh", ["-c", gated(gate, "true", "exit 0")]);
    supervisors[0]!.kill("SIGKILL");
    await exits(supervisors[0]!);
    // The command lives on, in its own group: its end is watched for, not guessed.
    await new Promise((r) => setTimeout(r, 100));
    expect(await isRunning((await child.identity)!.process)).toBe(true);
    await writeFile(gate, "");
    expect(await child.exited).toEqual({ exitCode: null, signal: null, error: SUPERVISOR_LOST });
    const next = await start("sh", ["-c", "exit 4"]);
    expect(supervisors).toHaveLength(2);
    expect(await next.exited).toEqual({ exitCode: 4, signal: null, error: null });
  });
});

describe("supervise.js", () => {
  const spec = (command: string, stdinPath = join(dir, "payload")) => ({
    id: "unit0001",
    exitFile: join(dir, EXIT_FILE),
    command,
    args: [],
    cwd: join(dir, WORK_DIR),
    env: process.env,
    stdinPath,
    resultsPath: join(dir, "stdout"),
    agentPid: process.pid,
  });

  it("records and answers a command it cannot start, then exits once its stdin is over", async () => {
    const input = `${JSON.stringify(spec("no-such-command-here"))}\n`;
    const ran = spawnSync(process.execPath, [SUPERVISOR], { input, encoding: "utf8" });
    const error = "cannot start no-such-command-here: spawn no-such-command-here ENOENT";
    expect(ran).toMatchObject({ status: 0, stderr: "" });
    expect(JSON.parse(ran.stdout)).toEqual({ id: "unit0001", exit: { code: null, signal: null, error } });
    expect(await readExitFile(dir)).toEqual({ exitCode: null, signal: null, error });
  });

  it("exits without a trace when its stdin ends before a whole command came", async () => {
    for (const input of ["", JSON.stringify(spec("true")).slice(0, 20), "not json\n", '{"id":"x"}\n']) {
      expect(spawnSync(process.execPath, [SUPERVISOR], { input, encoding: "utf8" })).toMatchObject({
        status: 0,
        stdout: "",
        stderr: "",
      });
    }
    expect(await readExitFile(dir)).toBeNull();
  });

  it("outlives its agent: with the agent's pipes gone, it still records how the command ended", async () => {
    const gate = join(dir, "gate");
    const child = spawnSupervisor();
    const command = { ...spec("sh"), args: ["-c", gated(gate, "true", "exit 5")] };
    child.stdin!.write(`${JSON.stringify(command)}\n`);
    const answered = await new Promise<string>((resolve) => child.stdout!.once("data", (d: Buffer) => resolve(`${d}`)));
    expect(JSON.parse(answered)).toMatchObject({ id: "unit0001", pid: expect.any(Number) });
    // What a killed agent leaves: both pipes closed from its end (answers then meet EPIPE).
    child.stdin!.destroy();
    child.stdout!.destroy();
    await writeFile(gate, "");
    expect(await exits(child)).toBe(0);
    expect(await readExitFile(dir)).toEqual({ exitCode: 5, signal: null, error: null });
  });

  it("waiting for a streaming payload's FIFO, records that its agent died before feeding it, and exits", async () => {
    const fifo = join(dir, "stdin.fifo");
    execFileSync("mkfifo", ["-m", "600", fifo]);
    // A stand-in agent: starts the supervisor in the background, hands it the spec with its own PID
    // and dies at once, before anyone opens the FIFO for writing.
    const script =
      'printf "%s\\n" "$SPEC" | sed "s/\\"AGENT_PID\\"/$$/" | "$NODE" "$SUPERVISOR" >/dev/null 2>&1 & echo $!';
    const agent = spawnSync("sh", ["-c", script], {
      env: {
        ...process.env,
        SPEC: JSON.stringify({ ...spec("cat", fifo), agentPid: "AGENT_PID" }),
        NODE: process.execPath,
        SUPERVISOR,
      },
      encoding: "utf8",
    });
    expect(agent.status).toBe(0);
    const deadline = Date.now() + 5_000;
    let exit = await readExitFile(dir);
    while (exit === null && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 50));
      exit = await readExitFile(dir);
    }
    expect(exit).toEqual({
      exitCode: null,
      signal: null,
      error: "the agent stopped before it began to feed the command's stdin",
    });
    // It ended, rather than staying blocked in the FIFO's open.
    await vi.waitFor(() => expect(spawnSync("kill", ["-0", agent.stdout.trim()]).status).not.toBe(0), {
      timeout: 2_000,
    });
  });

  it("a command's relative paths follow its directory when the agent renames it while it runs", async () => {
    const gates = await mkdtemp(join(tmpdir(), "mesh-gate-"));
    dirs.push(gates);
    const gate = join(gates, "gate");
    const moved = `${dir}-moved`;
    dirs.push(moved);
    const child = await startProcess({
      unitId: "renamed1",
      command: "sh",
      args: ["-c", gated(gate, "echo before", "echo after; exit 6")],
      spoolDir: dir,
      stdinPath: join(dir, "payload"),
      stdoutPath: join(dir, "stdout"),
      env: { PATH: process.env.PATH ?? "" },
      supervisor,
    });
    await appears(join(dir, "stdout"));
    await rename(dir, moved);
    await writeFile(gate, "");
    expect(await child.exited).toEqual({ exitCode: 6, signal: null, error: null });
    expect(await readExitFile(moved)).toEqual({ exitCode: 6, signal: null, error: null });
    expect(await readFile(join(moved, "stdout"), "utf8")).toBe("before\nafter\n");
  });
});

describe("adoptProcess", () => {
  it("follows a process it did not start until it ends, then reads its status from the spool", async () => {
    const gate = join(dir, "gate");
    const child = await start("sh", ["-c", gated(gate, "true", "exit 130")]);
    const { process: command, supervisor: by } = (await child.identity)!;
    const adopted = adoptProcess(command, dir, 50, by);
    await writeFile(gate, "");
    expect(await adopted.exited).toEqual({ exitCode: 130, signal: null, error: null });
  });

  it("honours cancel by signalling the adopted group", async () => {
    const ready = join(dir, "ready");
    const child = await start("sh", ["-c", `touch ${ready}; sleep 60`]);
    await appears(ready);
    const { process: command, supervisor: by } = (await child.identity)!;
    const adopted = adoptProcess(command, dir, 50, by);
    adopted.cancel(30_000);
    expect(await adopted.exited).toEqual({ exitCode: null, signal: "SIGINT", error: null });
    await child.exited;
  });

  it("waits for the record of a command that is gone while its supervisor still runs", async () => {
    const gone = await start("true", []);
    await gone.exited;
    await rm(join(dir, EXIT_FILE));
    // Stands for a supervisor that has reaped the command and not yet recorded it.
    const recorder = spawn("sleep", ["60"]);
    const adopted = adoptProcess((await gone.identity)!.process, dir, 20, await identifyProcess(recorder.pid!));
    await new Promise((r) => setTimeout(r, 150));
    await writeFile(join(dir, EXIT_FILE), '{"code":9,"signal":null}');
    expect(await adopted.exited).toEqual({ exitCode: 9, signal: null, error: null });
    recorder.kill();
  });

  it("a process that ends without an exit file (its supervisor killed first) is reported as such", async () => {
    const ready = join(dir, "ready");
    const child = await start("sh", ["-c", `touch ${ready}; sleep 60`]);
    await appears(ready);
    const { process: command, supervisor: by } = (await child.identity)!;
    const adopted = adoptProcess(command, dir, 50, by);
    supervisors[0]!.kill("SIGKILL");
    await exits(supervisors[0]!);
    process.kill(-child.pid!, "SIGKILL");
    expect(await adopted.exited).toEqual({ exitCode: null, signal: null, error: NO_EXIT_STATUS });
    expect(await readFile(join(dir, EXIT_FILE)).catch(() => null)).toBeNull();
  });
});
