/**
 * Process isolation: a transmit stream whose settings ask for podman runs its playbook in a
 * container on the agent's host, through ansible-runner's own podman support. No registry is
 * reachable, so the image is imported locally: an empty root whose /usr is the host's, mounted
 * read-only (python3 and ansible come from there).
 */
import { execFile, execFileSync } from "node:child_process";
import { mkdir, readFile, readdir, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RunningAgent, newMesh, sh, startAgent, tempDir } from "./harness.js";

const run = promisify(execFile);
const IMAGE = "localhost/mesh-agent-hostfs:test";

/** The podman version, if podman is installed and answers `podman info` (it can run containers). */
function podmanVersion(): string | null {
  try {
    execFileSync("podman", ["info", "--format", "{{.Host.OCIRuntime.Name}}"], { stdio: "ignore", timeout: 30_000 });
    return execFileSync("podman", ["--version"], { encoding: "utf8" }).trim();
  } catch {
    return null;
  }
}

const podman = podmanVersion();
const mesh = newMesh();
let agent: RunningAgent;
let dir: string;

async function importImage(): Promise<void> {
  const root = join(dir, "rootfs");
  for (const d of ["etc", "runner", "proc", "root", "dev", "sys", "usr", "tmp", "var/tmp", "run"])
    await mkdir(join(root, d), { recursive: true });
  for (const d of ["bin", "sbin", "lib", "lib64"]) await symlink(`usr/${d}`, join(root, d));
  await run("sh", ["-c", `tar -C ${root} -c . | podman import - ${IMAGE}`]);
}

// .ci/run installs Debian's podman and configures it (scripts/podman-setup.sh). Where podman is
// missing or cannot run (`podman info` fails), this file is skipped and its title says why.
describe.skipIf(!podman)(
  `process isolation with ${podman ?? "podman: SKIPPED, podman missing or unusable (apt-get install podman runc; scripts/podman-setup.sh)"}`,
  () => {
    beforeAll(async () => {
      dir = await tempDir("mesh-podman-");
      await importImage();
      agent = await startAgent({
        mesh,
        nodeId: "container-host",
        config: "- work-command: {worktype: ansible-runner, command: ansible-runner, params: worker}\n",
      });
    });

    afterAll(async () => {
      await agent?.stop();
    });

    it("the agent reports podman in its hello", async () => {
      const status = JSON.parse((await sh(mesh, "$MESHCTL status --json")).stdout.toString()) as {
        nodes: { versions: { podman: string | null; podmanUsable: boolean } }[];
      };
      expect(podman).toContain(status.nodes[0]!.versions.podman!);
      expect(status.nodes[0]!.versions.podmanUsable).toBe(true);
    });

    it("a unit asking for process isolation runs its playbook inside a container", async () => {
      const pdd = join(dir, "pdd");
      await mkdir(join(pdd, "project"), { recursive: true });
      await mkdir(join(pdd, "inventory"));
      await mkdir(join(pdd, "env"));
      await writeFile(
        join(pdd, "project/site.yml"),
        `- hosts: localhost
  gather_facts: false
  tasks:
    - command: cat /proc/1/cmdline
      register: init
    - debug: msg="pid1={{ init.stdout }}"
`,
      );
      await writeFile(
        join(pdd, "inventory/hosts"),
        "localhost ansible_connection=local ansible_python_interpreter=/usr/bin/python3\n",
      );
      await writeFile(
        join(pdd, "env/settings"),
        `process_isolation: true\nprocess_isolation_executable: podman\ncontainer_image: ${IMAGE}\ncontainer_options: ["-v=/usr:/usr:ro"]\n`,
      );
      const result = await sh(
        mesh,
        `ansible-runner transmit ${pdd} -p site.yml | $MESHCTL work submit ansible-runner -f -p - | ansible-runner process ${dir}/out`,
      );
      expect(result.code, result.stderr).toBe(0);
      const artifacts = join(dir, "out/artifacts");
      const ident = (await readdir(artifacts, { withFileTypes: true })).find(
        (e) => e.isDirectory() && e.name !== "job_events",
      );
      const base = (await readdir(artifacts)).includes("status") ? artifacts : join(artifacts, ident!.name);
      expect((await readFile(join(base, "status"), "utf8")).trim()).toBe("successful");
      const command = JSON.parse(await readFile(join(base, "command"), "utf8")) as { command: string[] };
      expect(command.command.slice(0, 2)).toEqual(["podman", "run"]);
      // Inside the container, PID 1 is the playbook itself: its own PID namespace.
      const stdout = await readFile(join(base, "stdout"), "utf8");
      expect(stdout).toMatch(/pid1=\/usr\/bin\/python3\\u0000\/usr\/bin\/ansible-playbook/);
    });
  },
);
