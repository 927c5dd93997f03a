/**
 * The agent dials out again after the broker goes away: a broker of its own (not the shared
 * one) is stopped and started on the same port and state; the node comes back and units run.
 */
import { spawn } from "node:child_process";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { request } from "undici";
import { afterAll, describe, expect, it } from "vitest";
import { type LocalBroker, freePort, startBroker } from "../../scripts/local-broker.js";
import type { MeshStatus } from "../../shared/unit.js";
import { agentArgv, tempDir, waitFor } from "./harness.js";

const token = "reconnect-token";
let broker: LocalBroker | undefined;
const agent: { stop: () => void } = { stop: () => undefined };

afterAll(async () => {
  agent.stop();
  await broker?.stop();
});

async function get<T>(url: string, path: string): Promise<T> {
  const response = await request(`${url}/v1/meshes/r${path}`, { headers: { authorization: `Bearer ${token}` } });
  return (await response.body.json()) as T;
}

async function submitAndWait(url: string): Promise<string> {
  const created = await request(`${url}/v1/meshes/r/units?worktype=cat`, {
    method: "POST",
    headers: { authorization: `Bearer ${token}` },
    body: "again",
  });
  const { id } = (await created.body.json()) as { id: string };
  await waitFor(
    async () => (await get<{ state: string }>(url, `/units/${id}`)).state === "Succeeded",
    `unit ${id} to succeed`,
  );
  const results = await request(`${url}/v1/meshes/r/units/${id}/results`, {
    headers: { authorization: `Bearer ${token}` },
  });
  return results.body.text();
}

describe("reconnect", () => {
  it("the agent comes back after a broker restart, and units submitted before and after both run", async () => {
    const dir = await tempDir("mesh-reconnect-");
    const port = await freePort();
    const start = () => startBroker({ stateDir: join(dir, "state"), token, logFile: join(dir, "broker.log"), port });
    broker = await start();
    const url = broker.url;
    await writeFile(join(dir, "agent.yml"), "- work-command: {worktype: cat, command: cat}\n");
    const child = spawn(
      process.execPath,
      agentArgv({
        broker: url,
        token,
        mesh: "r",
        nodeId: "phoenix",
        config: join(dir, "agent.yml"),
        workDir: join(dir, "work"),
      }),
      { stdio: "ignore" },
    );
    agent.stop = () => void child.kill("SIGKILL");
    const connected = async () =>
      (await get<MeshStatus>(url, "/status")).nodes.some((n) => n.nodeId === "phoenix" && n.connected);
    await waitFor(connected, "the node to connect");
    expect(await submitAndWait(url)).toBe("again");

    const node = async () => (await get<MeshStatus>(url, "/status")).nodes.find((n) => n.nodeId === "phoenix");
    const before = (await node())?.connectedAt;
    await broker.stop();
    broker = await start();
    await waitFor(
      async () => {
        const now = await node();
        return Boolean(now?.connected && now.connectedAt !== before);
      },
      "the node to say hello again",
      60_000,
    );
    expect(await submitAndWait(url)).toBe("again");
    expect(child.exitCode).toBeNull();
  });
});
