import { defineConfig } from "vitest/config";

// The unit tests that pin the modules stryker.config.json mutates: fast, no broker, no agent
// processes, so each mutant's run takes well under a second.
export default defineConfig({
  test: {
    environment: "node",
    include: [
      "test/unit/states.test.ts",
      "test/unit/schedule.test.ts",
      "test/unit/frames.test.ts",
      "test/unit/payload.test.ts",
      "test/unit/events.test.ts",
      "test/unit/feed.test.ts",
      "test/unit/artifacts.test.ts",
      "test/unit/meshctl-events.test.ts",
      "test/unit/dashboard-sse.test.ts",
      "test/unit/dispatch.test.ts",
      "test/unit/lease.test.ts",
      "test/unit/unit-logic.test.ts",
      "test/unit/spool.test.ts",
      "test/unit/verify.test.ts",
      "test/unit/signing.test.ts",
      "test/unit/config.test.ts",
      "test/unit/control-protocol.test.ts",
      "test/unit/control-commands.test.ts",
      "test/unit/protocol.test.ts",
      "test/unit/refusal.test.ts",
    ],
  },
});
