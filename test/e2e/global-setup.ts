/**
 * One broker on real workerd for the whole e2e run; test files isolate themselves by mesh id. The
 * e2e project runs it on `mesh-broker serve`; the e2e-wrangler project (global-setup-wrangler.ts)
 * on `wrangler dev`, so the Cloudflare path keeps a smoke run of its own.
 */
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

export function setupOn(runtime: "serve" | "wrangler") {
  return async (project: TestProject) => {
    const dir = await mkdtemp(join(tmpdir(), `mesh-e2e-${runtime}-`));
    const token = `e2e-${Math.random().toString(36).slice(2)}`;
    const broker = await startBroker({
      runtime,
      stateDir: join(dir, "state"),
      token,
      logFile: join(dir, "broker.log"),
    });
    project.provide("broker", { url: broker.url, token, stateDir: dir });
    return async () => {
      await broker.stop();
    };
  };
}

export default setupOn("serve");
