/** What this host can run: versions of ansible-runner and podman, and whether podman answers. */
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import type { Versions } from "../shared/protocol.js";

const run = promisify(execFile);

async function output(command: string, args: string[]): Promise<string | null> {
  try {
    const { stdout } = await run(command, args, { timeout: 15_000 });
    return stdout.trim();
  } catch {
    return null;
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
