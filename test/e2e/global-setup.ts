/** One broker on real workerd for the whole e2e run; test files isolate themselves by mesh id. */
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TestProject } from "vitest/node";
import { startBroker } from "../../scripts/local-broker.js";

declare module "vitest" {
  export interface ProvidedContext {
    broker: { url: string; token: string; stateDir: string };
  }
}

export default async function setup(project: TestProject) {
  const dir = await mkdtemp(join(tmpdir(), "mesh-e2e-"));
  const token = `e2e-${Math.random().toString(36).slice(2)}`;
  const broker = await startBroker({ stateDir: join(dir, "state"), token, logFile: join(dir, "broker.log") });
  project.provide("broker", { url: broker.url, token, stateDir: dir });
  return async () => {
    await broker.stop();
  };
}
