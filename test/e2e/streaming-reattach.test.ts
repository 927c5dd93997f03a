/**
 * A unit started on a payload still streaming in (early start, or a warm start: agent/warm.ts)
 * whose agent loses its links while the upload ends. The broker tells `payload-end` only to a data
 * socket attached when the upload ends, so the re-attached agent must take the payload as whole
 * from the size its `attached` gives, pull the rest and end the command's stdin: the unit then
 * succeeds on every byte, instead of running for ever on a stdin that never ends.
 */
import { randomBytes } from "node:crypto";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { UnitRecord } from "../../shared/unit.js";
import { type CutProxy, startCutProxy } from "./cut-proxy.js";
import { type RunningAgent, api, broker, newMesh, sh, startAgent, tempDir, waitFinished, waitFor } from "./harness.js";

const mesh = newMesh();
let agent: RunningAgent;
let proxy: CutProxy;
let dir: string;

const CONFIG = `
- work-command: {worktype: early-cat, command: cat, streamingpayload: true}
- work-command: {worktype: warm-cat, command: cat, streamingpayload: true, warmstart: true}
`;

beforeAll(async () => {
  dir = await tempDir();
  proxy = await startCutProxy(Number(new URL(broker().url).port));
  agent = await startAgent({ mesh, nodeId: "reattach-node", config: CONFIG, via: proxy.url });
  await waitFor(() => agent.logs().includes('"warm:ready"'), "a warm command ready", 20_000);
});

afterAll(async () => {
  await agent?.stop();
  await proxy?.close();
});

async function unitOf(worktype: string): Promise<UnitRecord | undefined> {
  const listed = (await api<UnitRecord[]>(mesh, "GET", "/units")).body.find((u) => u.worktype === worktype);
  return listed && (await api<UnitRecord>(mesh, "GET", `/units/${listed.id}`)).body;
}

describe("a streaming upload that ends while the agent is cut off", () => {
  for (const worktype of ["early-cat", "warm-cat"]) {
    it(`${worktype}: the re-attached unit reads the rest of the payload, then its end`, async () => {
      const first = randomBytes(200_000);
      const rest = randomBytes(300_000);
      const go = join(dir, `${worktype}.go`);
      await writeFile(join(dir, `${worktype}.1`), first);
      await writeFile(join(dir, `${worktype}.2`), rest);
      // The producer sends `first`, then waits for the go file to send the rest and end the upload.
      const upload = sh(
        mesh,
        `{ cat ${dir}/${worktype}.1; while [ ! -e ${go} ]; do sleep 0.05; done; cat ${dir}/${worktype}.2; } | $MESHCTL work submit ${worktype} -p -`,
      );
      // The command runs on a stdin still open. (Not "has echoed some of `first`": how much of a
      // stalled producer's stream reaches the broker before more comes varies, down to nothing under load.)
      let unit: UnitRecord | undefined;
      try {
        await waitFor(async () => {
          unit = await unitOf(worktype);
          return unit?.state === "Running";
        }, "the first part through the command");
        proxy.down();
      } finally {
        // Whatever happened, the producer ends (it would wait for ever).
        await writeFile(go, "");
      }
      const uploaded = await upload;
      expect(uploaded.code, uploaded.stderr).toBe(0);
      proxy.up();
      // The data link dials again with a backoff of up to 15 s (unit-link.ts), grown while the proxy was down.
      const done = await waitFinished(mesh, unit!.id, 60_000);
      expect(done.state, done.detail ?? "").toBe("Succeeded");
      const results = await sh(mesh, `$MESHCTL work results ${unit!.id}`);
      expect(results.stdout.equals(Buffer.concat([first, rest]))).toBe(true);
      if (worktype === "warm-cat")
        expect(agent.logs()).toMatch(new RegExp(`"unit:started","unit":"${unit!.id}".*"warm":true`));
    }, 100_000);
  }
});
