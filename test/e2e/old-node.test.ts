/**
 * The agent on the oldest Node it claims (package.json engines: the major of its floor), when the
 * machine's own Node is that one (Debian 13 ships Node 20; the tests themselves run on the pinned
 * Node 24). Skipped, with the reason in its title, elsewhere.
 */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { ROOT } from "../../scripts/local-broker.js";
import type { MeshStatus } from "../../shared/unit.js";
import { api, newMesh, startAgent, waitFinished } from "./harness.js";

const engines = (JSON.parse(readFileSync(`${ROOT}package.json`, "utf8")) as { engines: { node: string } }).engines.node;
const floor = /^>=(\d+)\.(\d+)\.(\d+)$/.exec(engines);
const SYSTEM_NODE = "/usr/bin/node";
let version = "";
try {
  version = execFileSync(SYSTEM_NODE, ["--version"]).toString().trim();
} catch {
  // No system Node.
}
const [major, minor, patch] = version.slice(1).split(".").map(Number);
const oldest = floor && major === Number(floor[1]);
const reason = !floor
  ? `engines.node is not ">=X.Y.Z" (${engines})`
  : !version
    ? `${SYSTEM_NODE} is missing`
    : `${SYSTEM_NODE} is ${version}, not Node ${floor[1]}`;

describe.skipIf(!oldest)(
  `the agent on the oldest Node it supports${oldest ? ` (${version})` : ` — skipped: ${reason}`}`,
  () => {
    it("is at or above the engines floor, joins and runs a unit", async () => {
      expect(
        [major! - Number(floor![1]), minor! - Number(floor![2]), patch! - Number(floor![3])].find((d) => d !== 0) ?? 0,
      ).toBeGreaterThanOrEqual(0);
      const mesh = newMesh();
      const agent = await startAgent({
        mesh,
        nodeId: "old-node",
        node: SYSTEM_NODE,
        config: "- work-command: {worktype: cat, command: cat}\n",
      });
      try {
        const created = await api<{ id: string }>(mesh, "POST", "/units?worktype=cat", {
          body: "hello from an old node\n",
        });
        expect(created.status).toBe(201);
        expect((await waitFinished(mesh, created.body.id)).state).toBe("Succeeded");
        expect((await api<string>(mesh, "GET", `/units/${created.body.id}/results`)).body).toBe(
          "hello from an old node\n",
        );
        // The broker lists the Node the agent said it runs on: the old one, not the tests' own.
        const status = await api<MeshStatus>(mesh, "GET", "/status");
        expect(status.body.nodes.find((n) => n.nodeId === "old-node")?.versions.node).toBe(version);
        expect(version).not.toBe(process.version);
      } finally {
        await agent.stop();
      }
    });
  },
);
