/** Payloads and results far above the 1 MiB WebSocket message limit, byte-exact. */
import { createHash, randomBytes } from "node:crypto";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RunningAgent, newMesh, sh, startAgent, tempDir } from "./harness.js";

const mesh = newMesh();
let agent: RunningAgent;
let dir: string;

beforeAll(async () => {
  dir = await tempDir();
  agent = await startAgent({
    mesh,
    nodeId: "streamer",
    config: `
- work-command: {worktype: sha256, command: sha256sum}
- work-command: {worktype: sh, command: sh, params: "-c", allowruntimeparams: true}
`,
  });
});

afterAll(async () => {
  await agent.stop();
});

describe("large streams", () => {
  it("a 50 MiB random payload reaches the work command intact", async () => {
    const payload = randomBytes(50 * 1024 * 1024);
    const file = join(dir, "payload");
    await writeFile(file, payload);
    const digest = createHash("sha256").update(payload).digest("hex");
    const result = await sh(mesh, `$MESHCTL work submit sha256 -f -p ${file}`);
    expect(result.stderr).toBe("");
    expect(result.code).toBe(0);
    expect(result.stdout.toString()).toBe(`${digest}  -\n`);
  });

  it("50 MiB of results come back byte for byte, the same bytes the worker wrote", async () => {
    const produced = join(dir, "produced");
    const result = await sh(
      mesh,
      `$MESHCTL work submit sh -f -p /dev/null -a params="'head -c 52428800 /dev/urandom | tee ${produced}'"`,
    );
    expect(result.code).toBe(0);
    const written = await readFile(produced);
    expect(written.byteLength).toBe(50 * 1024 * 1024);
    expect(result.stdout.byteLength).toBe(written.byteLength);
    expect(createHash("sha256").update(result.stdout).digest("hex")).toBe(
      createHash("sha256").update(written).digest("hex"),
    );
  });
});
