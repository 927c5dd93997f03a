import { cloudflareTest } from "@cloudflare/vitest-plugin";
import { defineConfig } from "vitest/config";
import { ADMIN } from "./test/workers/admin.js";

const e2e = {
  environment: "node",
  testTimeout: 120_000,
  hookTimeout: 120_000,
  // Files share one broker (each uses its own mesh); two at a time fit two cores.
  maxWorkers: 2,
  sequence: { groupOrder: 1 },
} as const;

/**
 * The broker's Worker in-process on the plugin's own workerd (a miniflare of @cloudflare/vitest-plugin),
 * from wrangler.toml with `vars` overriding its tunables. The plugin's workerd is older than ours:
 * wrangler.toml's compatibility_date is newer than it supports, so the tests run at the newest date it
 * knows: 2026-11-09 for its workerd 1.20261102.1, which refuses wrangler.toml's 2026-11-17 at startup
 * (raise it with the plugin). The hello deadline is short so its test waits 2 s, not 10.
 */
const worker = (vars: Record<string, string> = {}) =>
  cloudflareTest({
    wrangler: { configPath: "./wrangler.toml" },
    miniflare: { compatibilityDate: "2026-11-09", bindings: { ADMIN_TOKEN: ADMIN, HELLO_TIMEOUT_MS: "2000", ...vars } },
  });
const workers = {
  setupFiles: ["test/workers/settle.ts"] as string[],
  testTimeout: 10_000,
  hookTimeout: 10_000,
  // Beside e2e, whose files mostly wait on agents and brokers: the plugin's startup (~20 s) overlaps.
  // Projects of one group must share maxWorkers.
  maxWorkers: e2e.maxWorkers,
  sequence: { groupOrder: 1 },
} as const;

export default defineConfig({
  test: {
    // The in-process broker (test/workers/) logs every event (broker/log.ts) on the tests' console:
    // left out (a root option; projects cannot set it). Its errors (stderr) stay.
    onConsoleLog: (log, type) => !(type === "stdout" && log.startsWith('{"event"')),
    projects: [
      {
        test: {
          name: "unit",
          include: ["test/unit/**/*.test.ts"],
          environment: "node",
          sequence: { groupOrder: 0 },
        },
      },
      {
        // Routes, auth, validation and each object's behaviour through the Worker's fetch and WebSockets,
        // no agent process: test/workers/harness.ts.
        plugins: [worker()],
        test: {
          ...workers,
          name: "workers",
          include: ["test/workers/**/*.test.ts"],
          exclude: ["test/workers/quotas.test.ts"],
        },
      },
      {
        // Quotas small enough to reach, on a Worker of their own.
        plugins: [worker({ MAX_PENDING_PER_SUBMITTER: "2", MAX_NODES: "2" })],
        test: { ...workers, name: "workers-quotas", include: ["test/workers/quotas.test.ts"] },
      },
      {
        // On `mesh-broker serve` (scripts/serve-broker.ts), as npm start and production run it.
        test: { ...e2e, name: "e2e", include: ["test/e2e/**/*.test.ts"], globalSetup: ["test/e2e/global-setup.ts"] },
      },
      {
        // A smoke subset on `wrangler dev`, the Cloudflare toolchain's runtime: the ansible-runner
        // pipeline, SSE events, and a broker restart (reconnect.test.ts starts its own, so the env).
        test: {
          ...e2e,
          name: "e2e-wrangler",
          include: ["test/e2e/ansible.test.ts", "test/e2e/events.test.ts", "test/e2e/reconnect.test.ts"],
          globalSetup: ["test/e2e/global-setup-wrangler.ts"],
          env: { MESH_BROKER_RUNTIME: "wrangler" },
        },
      },
    ],
  },
});
