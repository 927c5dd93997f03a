/**
 * The executor against the built supervisor (dist/, which `npm test` builds first): statuses,
 * signals, arguments, the working directory. The executor is loaded from dist/ as well, so that
 * it finds supervise.js beside itself as it does when installed.
 */
import { type ChildProcess, spawnSync } from "node:child_process";
import { EventEmitter } from "node:events";
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from "vitest";
import { EXIT_FILE, NO_EXIT_STATUS, readExitFile } from "../../agent/exit-file.js";
import { identifyProcess } from "../../agent/proc-identity.js";
import { WORK_DIR } from "../../agent/spool.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const BUILT = ["process", "spare", "spool", "supervise"].map((name) => ({
  source: join(ROOT, "agent", `${name}.ts`),
  built: join(ROOT, "dist/agent", `${name}.js`),
}));
const SUPERVISOR = join(ROOT, "dist/agent/supervise.js");
const { startProcess, adoptProcess, spawnSupervisor }: typeof import("../../agent/process.js") = await import(
  join(ROOT, "dist/agent/process.js")
);
const { SpareSupervisor, REARM_AFTER_MS }: typeof import("../../agent/spare.js") = await import(
  join(ROOT, "dist/agent/spare.js")
);

const dirs: string[] = [];
let dir = "";

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
});

afterAll(async () => {
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});

const start = (command: string, args: string[], supervisor?: () => ChildProcess) =>
  startProcess({
    command,
    args,
    spoolDir: dir,
    stdinPath: join(dir, "payload"),
    stdoutPath: join(dir, "stdout"),
    env: { PATH: process.env.PATH ?? "" },
    ...(supervisor ? { supervisor } : {}),
  });
const results = () => readFile(join(dir, "stdout"), "utf8");

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

  it("a command that ignores SIGINT is killed after the grace, supervisor and all", async () => {
    const ready = join(dir, "ready");
    const child = await start("sh", ["-c", `trap "" INT; touch ${ready}; sleep 60`]);
    await appears(ready);
    child.cancel(200);
    expect(await child.exited).toEqual({ exitCode: null, signal: "SIGKILL", error: null });
    expect(await readExitFile(dir)).toBeNull();
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
});

describe("supervise.js", () => {
  const spec = (command: string) => ({
    exitFile: join(dir, EXIT_FILE),
    command,
    args: [],
    cwd: join(dir, WORK_DIR),
    env: process.env,
    stdinPath: join(dir, "payload"),
    resultsPath: join(dir, "stdout"),
    agentPid: process.pid,
  });

  it("records a command it cannot start and exits 127, as a shell would", async () => {
    const input = `${JSON.stringify(spec("no-such-command-here"))}\n`;
    const supervisor = spawnSync(process.execPath, [SUPERVISOR], { input, encoding: "utf8" });
    expect(supervisor).toMatchObject({ status: 127, stdout: "", stderr: "" });
    expect(await readExitFile(dir)).toEqual({
      exitCode: null,
      signal: null,
      error: "cannot start no-such-command-here: spawn no-such-command-here ENOENT",
    });
  });

  it("exits without a trace when its stdin ends before a command came", async () => {
    for (const input of ["", JSON.stringify(spec("true")).slice(0, 20)]) {
      expect(spawnSync(process.execPath, [SUPERVISOR], { input, encoding: "utf8" })).toMatchObject({
        status: 0,
        stdout: "",
        stderr: "",
      });
    }
    expect(await readExitFile(dir)).toBeNull();
  });
  it("waiting for a streaming payload's FIFO, records that its agent died before feeding it, and exits", async () => {
    const fifo = join(dir, "stdin.fifo");
    spawnSync("mkfifo", ["-m", "600", fifo]);
    // A stand-in agent: starts the supervisor in the background, hands it the spec with its own PID
    // and dies at once, before anyone opens the FIFO for writing.
    const script =
      'printf "%s\\n" "$SPEC" | sed "s/\\"AGENT_PID\\"/$$/" | "$NODE" "$SUPERVISOR" >/dev/null 2>&1 & echo $!';
    const agent = spawnSync("sh", ["-c", script], {
      env: {
        ...process.env,
        SPEC: JSON.stringify({ ...spec("cat"), stdinPath: fifo, agentPid: "AGENT_PID" }),
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
});

describe("SpareSupervisor", () => {
  const exits = (child: ChildProcess) => new Promise((resolve) => child.once("exit", resolve));

  it("hands out the supervisor it started ahead, runs the unit's command under it, and starts the next when told", async () => {
    const spawned: ChildProcess[] = [];
    const spare = new SpareSupervisor(() => spawned[spawned.push(spawnSupervisor()) - 1]!);
    spare.arm();
    const ahead = spawned[0]!;
    // The command's process group (field 5 of its /proc stat) is the one its supervisor leads.
    const child = await start("sh", ["-c", "cut -d' ' -f5 /proc/$$/stat"], () => spare.take());
    expect(child.pid).toBe(ahead.pid);
    expect(await child.exited).toEqual({ exitCode: 0, signal: null, error: null });
    expect(await results()).toBe(`${ahead.pid}\n`);
    // Not while the unit is starting: its boot would compete with the unit (spare.ts).
    await new Promise((r) => setImmediate(r));
    expect(spawned).toHaveLength(1);
    spare.arm();
    spare.arm();
    expect(spawned).toHaveLength(2);
    const gone = exits(spawned[1]!);
    spare.stop();
    expect(await gone).toBe(0);
  });

  it("the command gets only the environment in its spec; the supervisor has neither MESH_* nor Node's settings", async () => {
    process.env.NODE_MESH_TEST = "for the agent";
    process.env.MESH_TEST_SECRET = "the agent's";
    try {
      const script =
        'echo "$GIVEN/$MESH_TEST_SECRET/$NODE_MESH_TEST"; tr "\\0" "\\n" < /proc/$PPID/environ | grep -c -e ^NODE_ -e ^MESH_';
      const child = await startProcess({
        command: "sh",
        args: ["-c", script],
        spoolDir: dir,
        stdinPath: join(dir, "payload"),
        stdoutPath: join(dir, "stdout"),
        env: { PATH: process.env.PATH ?? "", GIVEN: "given" },
        supervisor: spawnSupervisor,
      });
      expect(await child.exited).toEqual({ exitCode: 1, signal: null, error: null });
      expect(await results()).toBe("given//\n0\n");
    } finally {
      delete process.env.NODE_MESH_TEST;
      delete process.env.MESH_TEST_SECRET;
    }
  });

  it("starts the next spare REARM_AFTER_MS after a take if nobody said the unit is under way", async () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
    try {
      const started: string[] = [];
      const spare = new SpareSupervisor(() => {
        started.push("spare");
        return new EventEmitter() as ChildProcess;
      });
      spare.take();
      expect(started).toHaveLength(1); // none was waiting: one started for the unit
      vi.advanceTimersByTime(REARM_AFTER_MS - 1);
      expect(started).toHaveLength(1);
      vi.advanceTimersByTime(1);
      expect(started).toHaveLength(2);
      spare.stop();
      spare.take(); // after stop, a take still gets a supervisor, but no spare follows
      vi.advanceTimersByTime(REARM_AFTER_MS);
      expect(started).toHaveLength(3);
    } finally {
      vi.useRealTimers();
    }
  });

  it("lets its waiting spare go on stop, and starts no other", async () => {
    const spawned: ChildProcess[] = [];
    const spare = new SpareSupervisor(() => spawned[spawned.push(spawnSupervisor()) - 1]!);
    spare.arm();
    const gone = exits(spawned[0]!);
    spare.stop();
    expect(await gone).toBe(0);
    spare.arm();
    expect(spawned).toHaveLength(1);
  });
});

describe("adoptProcess", () => {
  it("follows a process it did not start until it ends, then reads its status from the spool", async () => {
    const gate = join(dir, "gate");
    const child = await start("sh", ["-c", `while [ ! -e ${gate} ]; do sleep 0.05; done; exit 130`]);
    const adopted = adoptProcess(await identifyProcess(child.pid!), dir, 50);
    await writeFile(gate, "");
    expect(await adopted.exited).toEqual({ exitCode: 130, signal: null, error: null });
  });

  it("honours cancel by signalling the adopted group", async () => {
    const ready = join(dir, "ready");
    const child = await start("sh", ["-c", `touch ${ready}; sleep 60`]);
    await appears(ready);
    const adopted = adoptProcess(await identifyProcess(child.pid!), dir, 50);
    adopted.cancel(30_000);
    expect(await adopted.exited).toEqual({ exitCode: null, signal: "SIGINT", error: null });
    await child.exited;
  });

  it("a process that ends without an exit file is reported as such", async () => {
    const ready = join(dir, "ready");
    const child = await start("sh", ["-c", `touch ${ready}; sleep 60`]);
    await appears(ready);
    const adopted = adoptProcess(await identifyProcess(child.pid!), dir, 50);
    process.kill(-child.pid!, "SIGKILL");
    expect(await adopted.exited).toEqual({ exitCode: null, signal: null, error: NO_EXIT_STATUS });
    expect(await readFile(join(dir, EXIT_FILE)).catch(() => null)).toBeNull();
  });
});
