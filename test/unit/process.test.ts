/** The work-command wrapper against the real /bin/sh (dash on Debian): statuses, signals, arguments. */
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeEach, describe, expect, it } from "vitest";
import { adoptProcess, startProcess } from "../../agent/process.js";
import { EXIT_FILE, NO_EXIT_STATUS, identifyProcess, readExitStatus } from "../../agent/spool.js";

const dirs: string[] = [];
let dir = "";

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "mesh-process-"));
  dirs.push(dir);
  await writeFile(join(dir, "payload"), "input\n");
});

afterAll(async () => {
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});

const start = (command: string, args: string[]) =>
  startProcess({ command, args, cwd: dir, stdinPath: join(dir, "payload"), stdoutPath: join(dir, "stdout") });
const results = () => readFile(join(dir, "stdout"), "utf8");

/** Resolves once `path` exists: the command signals readiness by creating it. */
async function appears(path: string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (await readFile(path).then(() => true, () => false)) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`${path} never appeared`);
}

describe("startProcess", () => {
  it("records the exit status in the spool and reports it", async () => {
    const child = await start("sh", ["-c", "cat; echo err >&2; exit 3"]);
    expect(await child.exited).toEqual({ exitCode: 3, signal: null, error: null });
    expect(await readExitStatus(dir)).toBe(3);
    expect(await results()).toBe("input\nerr\n");
  });

  it("passes arguments verbatim and runs the program, not a shell builtin of that name", async () => {
    const child = await start("printf", ["[%s]", "a b", "$HOME", "*", "", "x;y"]);
    expect((await child.exited).exitCode).toBe(0);
    expect(await results()).toBe("[a b][$HOME][*][][x;y]");
    await rm(join(dir, "stdout"));
    await (await start("echo", ["-e", "a\\tb"])).exited;
    // /bin/echo of coreutils knows -e; dash's builtin echo would print "-e a<TAB>b".
    expect(await results()).toBe("a\tb\n");
  });

  it("cancel SIGINTs the group: the command ends, the wrapper records its status", async () => {
    const ready = join(dir, "ready");
    const child = await start("sh", ["-c", `echo started; touch ${ready}; sleep 60`]);
    await appears(ready);
    child.cancel(30_000);
    expect(await child.exited).toEqual({ exitCode: null, signal: "SIGINT", error: null });
    expect(await readExitStatus(dir)).toBe(130);
    expect(await results()).toBe("started\n");
  });

  it("a command that ignores SIGINT is killed after the grace, wrapper and all", async () => {
    const ready = join(dir, "ready");
    const child = await start("sh", ["-c", `trap "" INT; touch ${ready}; sleep 60`]);
    await appears(ready);
    child.cancel(200);
    expect(await child.exited).toEqual({ exitCode: null, signal: "SIGKILL", error: null });
    expect(await readExitStatus(dir)).toBeNull();
  });

  it("a missing command is named plainly and never spawned", async () => {
    const child = await start("no-such-command-here", []);
    expect(child.pid).toBeNull();
    expect(await child.exited).toEqual({ exitCode: null, signal: null, error: "cannot start no-such-command-here: not found on PATH" });
    expect((await (await start("./payload", [])).exited).error).toBe("cannot start ./payload: not an executable file");
  });
});

describe("adoptProcess", () => {
  it("follows a process it did not start until it ends, then reads its status from the spool", async () => {
    const gate = join(dir, "gate");
    const child = await start("sh", ["-c", `while [ ! -e ${gate} ]; do sleep 0.05; done; exit 7`]);
    const adopted = adoptProcess(await identifyProcess(child.pid!), dir, 50);
    await writeFile(gate, "");
    expect(await adopted.exited).toEqual({ exitCode: 7, signal: null, error: null });
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
