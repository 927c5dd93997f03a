/**
 * The published package runs with Node alone: `npm pack`, then `npx ./mesh-agent-<v>.tgz --help`
 * from an empty directory. The runtime dependencies are bundled in the tarball (execution hosts
 * may not reach a registry), so --offline with an empty npm cache proves it needs nothing else.
 */
import { execFile } from "node:child_process";
import { readdir } from "node:fs/promises";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { ROOT } from "../../scripts/local-broker.js";
import { tempDir } from "./harness.js";

const run = promisify(execFile);

describe("npm package", () => {
  it("packs only built JavaScript, and both bins answer --help through npx", async () => {
    const dir = await tempDir("mesh-pack-");
    // --ignore-scripts: `npm test` built dist/ already; rebuilding it here would race the agents other files run.
    await run("npm", ["pack", "--silent", "--ignore-scripts", "--pack-destination", dir], { cwd: ROOT });
    const [tarball] = (await readdir(dir)).filter((f) => f.endsWith(".tgz"));
    expect(tarball).toMatch(/^mesh-agent-\d+\.\d+\.\d+\.tgz$/);
    const listing = (await run("tar", ["tzf", `${dir}/${tarball}`])).stdout.split("\n").filter(Boolean);
    expect(listing).toContain("package/dist/agent/cli.js");
    expect(listing).toContain("package/dist/agent/supervise.js");
    expect(listing).toContain("package/dist/meshctl/cli.js");
    expect(listing.filter((f) => f.startsWith("package/dist/") && f.endsWith(".ts") && !f.endsWith(".d.ts"))).toEqual(
      [],
    );

    expect(listing).toContain("package/node_modules/undici/package.json");
    // A fresh cache: nothing can come from what `npm ci` fetched for the repository itself.
    const env = { ...process.env, npm_config_cache: `${dir}/npm-cache` };
    const agent = await run("npx", ["--yes", "--offline", `./${tarball}`, "--help"], { cwd: dir, env });
    expect(agent.stdout).toMatch(/^Usage: mesh-agent --broker URL --token TOKEN/);
    const meshctl = await run("npx", ["--yes", "--offline", "--package", `./${tarball}`, "meshctl", "--help"], {
      cwd: dir,
      env,
    });
    expect(meshctl.stdout).toMatch(/^Usage: meshctl/);
  });
});
