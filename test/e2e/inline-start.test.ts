/**
 * Inline starts with a real agent (work types with `inlinestart: true`, docs/agent.md): a small
 * payload comes in the assignment and reaches the command byte for byte, at the INLINE_PAYLOAD_BYTES edge too; a
 * larger one still takes the data socket; results and exit are as without it.
 */
import { createHash, randomBytes } from "node:crypto";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { INLINE_PAYLOAD_BYTES } from "../../shared/protocol.js";
import { type RunningAgent, newMesh, sh, startAgent, tempDir } from "./harness.js";

const mesh = newMesh();
let agent: RunningAgent;
let dir: string;

beforeAll(async () => {
  dir = await tempDir();
  agent = await startAgent({
    mesh,
    nodeId: "quick",
    config: `
- work-command: {worktype: sha256, command: sha256sum, inlinestart: true}
- work-command: {worktype: fail, command: sh, params: "-c 'cat; exit 3'", inlinestart: true}
`,
  });
});

afterAll(async () => {
  await agent.stop();
});

/** The agent's `unit:assigned` lines so far, as parsed JSON. */
const assignedLines = () =>
  agent
    .logs()
    .split("\n")
    .filter((line) => line.includes('"unit:assigned"'))
    .map((line) => JSON.parse(line) as { unit: string; inline?: boolean });

describe("inline start", () => {
  it.each([
    { name: "an empty", size: 0, inline: true },
    { name: "a small", size: 1000, inline: true },
    { name: "an INLINE_PAYLOAD_BYTES", size: INLINE_PAYLOAD_BYTES, inline: true },
    { name: "a larger", size: INLINE_PAYLOAD_BYTES + 1, inline: false },
  ])("$name payload reaches the command byte for byte (inline: $inline)", async ({ size, inline }) => {
    const payload = randomBytes(size);
    const file = join(dir, `payload-${size}`);
    await writeFile(file, payload);
    const before = assignedLines().length;
    const result = await sh(mesh, `$MESHCTL work submit sha256 -f -p ${file}`);
    expect(result.stderr).toBe("");
    expect(result.code).toBe(0);
    expect(result.stdout.toString()).toBe(`${createHash("sha256").update(payload).digest("hex")}  -\n`);
    const assigned = assignedLines().slice(before);
    expect(assigned).toHaveLength(1);
    expect(assigned[0]!.inline === true).toBe(inline);
  });

  it("a command started inline that fails reports its exit and its output as any other", async () => {
    const file = join(dir, "echo");
    await writeFile(file, "some input\n");
    const result = await sh(mesh, `$MESHCTL work submit fail -f -p ${file}`);
    expect(result.stdout.toString()).toBe("some input\n");
    expect(result.code).not.toBe(0);
    expect(result.stderr.toString()).toMatch(/exit status 3/);
  });
});
