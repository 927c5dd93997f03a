/** What this host can run: versions of ansible-runner and podman, and whether podman answers. */
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import type { Versions } from "../shared/protocol.js";

const run = promisify(execFile);

async function output(command: string, args: string[]): Promise<string | null> {
  const result = await commandOutput(command, args);
  return result.ok ? result.output : null;
}

/** A command's trimmed stdout, or why it gave none (not found on PATH, exit status, timeout), in one line without the command. */
export async function commandOutput(
  command: string,
  args: string[],
): Promise<{ ok: true; output: string } | { ok: false; error: string }> {
  try {
    const { stdout } = await run(command, args, { timeout: 15_000 });
    return { ok: true, output: stdout.trim() };
  } catch (error) {
    const e = error as NodeJS.ErrnoException & { killed?: boolean; stderr?: string; code?: string | number };
    if (e.code === "ENOENT") return { ok: false, error: "not found on PATH" };
    if (e.killed) return { ok: false, error: "no answer within 15 s" };
    const stderr = (e.stderr ?? "").trim().split("\n").pop() ?? "";
    return { ok: false, error: `exit status ${e.code ?? "?"}${stderr ? `: ${stderr.slice(0, 200)}` : ""}` };
  }
}

export async function onPath(command: string): Promise<boolean> {
  return (await output("sh", ["-c", 'command -v "$1"', "sh", command])) !== null;
}

export async function probeVersions(agentVersion: string): Promise<Versions> {
  const [runner, podman, podmanInfo] = await Promise.all([
    output("ansible-runner", ["--version"]),
    output("podman", ["--version"]),
    output("podman", ["info", "--format", "{{.Host.OCIRuntime.Name}}"]),
  ]);
  return {
    agent: agentVersion,
    node: process.version,
    ansibleRunner: runner?.split(/\s+/).pop() ?? null,
    podman: podman?.replace(/^podman version\s*/i, "") ?? null,
    podmanUsable: podmanInfo !== null,
  };
}
