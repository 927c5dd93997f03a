/**
 * The agent's side of a health check (`meshctl node check`, shared/health.ts): can this host run
 * what it offers? ansible-runner must answer `--version` when a work type runs it; podman must
 * answer `podman info` when a work type runs podman (otherwise its state is reported, not judged:
 * whether a playbook uses --process-isolation is the submitter's choice); the work dir must be above
 * --min-free. The broker adds the clock check. Commands run with the agent's own PATH, as units do.
 */
import { basename } from "node:path";
import { isLowDisk, lowDiskReason } from "../shared/disk.js";
import { type HealthCheck, probeAgentTime } from "../shared/health.js";
import type { Logger } from "../shared/node/log.js";
import type { AgentControlMessage } from "../shared/protocol.js";
import type { WorkCommand } from "./config.js";
import { sampleDisk } from "./disk.js";
import { commandOutput } from "./probe.js";

interface HostFacts {
  workCommands: readonly WorkCommand[];
  workDir: string;
  minFreeBytes: number;
}

/** The answer to the broker's health check `id`: the checks, and the agent's clock while they ran. */
export async function answerProbe(
  id: string,
  opts: HostFacts & { log: Logger },
): Promise<Extract<AgentControlMessage, { type: "probe-result" }>> {
  const arrivedAt = Date.now();
  const checks = await runHealthChecks(opts);
  opts.log.info("agent:health-check", { failed: checks.filter((c) => !c.ok).map((c) => c.name) });
  return { type: "probe-result", id, agentTime: probeAgentTime(arrivedAt, Date.now()), checks };
}

async function runHealthChecks(opts: HostFacts): Promise<HealthCheck[]> {
  const needsRunner = opts.workCommands.some((w) => basename(w.command) === "ansible-runner");
  const [runner, podmanVersion, podmanInfo, disk] = await Promise.all([
    commandOutput("ansible-runner", ["--version"]),
    commandOutput("podman", ["--version"]),
    commandOutput("podman", ["info", "--format", "{{.Host.OCIRuntime.Name}}"]),
    sampleDisk(opts.workDir, opts.minFreeBytes),
  ]);
  return [
    runner.ok
      ? { name: "ansible-runner", ok: true, detail: `ansible-runner ${runner.output.split(/\s+/).pop() ?? ""}`.trim() }
      : {
          name: "ansible-runner",
          ok: !needsRunner,
          detail: `--version: ${runner.error}${needsRunner ? "" : " (no work type of this node runs it)"}`,
        },
    podmanCheck(
      podmanVersion,
      podmanInfo,
      opts.workCommands.some((w) => basename(w.command) === "podman"),
    ),
    disk === null
      ? { name: "disk", ok: false, detail: `cannot read the free space of ${opts.workDir}` }
      : {
          name: "disk",
          ok: !isLowDisk(disk),
          detail:
            lowDiskReason(disk) ??
            `${Math.floor(disk.freeBytes / 2 ** 20)} MiB free (--min-free ${Math.floor(disk.minFreeBytes / 2 ** 20)} MiB)`,
        },
  ];
}

type Output = Awaited<ReturnType<typeof commandOutput>>;

function podmanCheck(version: Output, info: Output, required: boolean): HealthCheck {
  if (!version.ok) return { name: "podman", ok: !required, detail: `--version: ${version.error}` };
  if (info.ok) return { name: "podman", ok: true, detail: `${version.output}, runtime ${info.output}` };
  return {
    name: "podman",
    ok: !required,
    detail: `${version.output}, but podman info fails: ${info.error}${required ? "" : " (no work type of this node runs podman)"}`,
  };
}
