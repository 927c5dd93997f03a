import { defineConfig } from "vitest/config";

const e2e = {
  environment: "node",
  testTimeout: 120_000,
  hookTimeout: 120_000,
  // Files share one broker (each uses its own mesh); two at a time fit two cores.
  maxWorkers: 2,
  sequence: { groupOrder: 1 },
} as const;

export default defineConfig({
  test: {
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
