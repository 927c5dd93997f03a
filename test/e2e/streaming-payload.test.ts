/**
 * Early start (issue 16): `meshctl work submit -p -` streams a pipe framed (shared/payload-framing.ts),
 * and a unit of a work type with `streamingpayload: true` starts on its node while the payload is
 * still arriving; other work types still start only on a whole payload. A cut upload never passes
 * for a whole one: the unit fails and the command started early is stopped.
 */
import { createHash, randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { UnitRecord } from "../../shared/unit.js";
import { type RunningAgent, api, newMesh, sh, startAgent, tempDir, waitFinished, waitFor } from "./harness.js";

const mesh = newMesh();
let agent: RunningAgent;
let dir: string;

beforeAll(async () => {
  dir = await tempDir();
  agent = await startAgent({
    mesh,
    nodeId: "streamer",
    config: `
- work-command: {worktype: stream-sha, command: sha256sum, streamingpayload: true}
- work-command: {worktype: whole-sha, command: sha256sum}
- work-command: {worktype: stream-cat, command: cat, streamingpayload: true}
`,
  });
});

afterAll(async () => {
  await agent.stop();
});

/** The time (epoch ms) of the agent's first log line with `event` for `unit`. */
function loggedAt(event: string, unit: string): number | null {
  for (const line of agent.logs().split("\n")) {
    if (!line.includes(`"${event}"`) || !line.includes(unit)) continue;
    return Date.parse((JSON.parse(line) as { time: string }).time);
  }
  return null;
}

/** The one unit of `worktype` in the mesh (each test uses its own work type or looks it up first). */
async function unitOf(worktype: string): Promise<UnitRecord> {
  const units = (await api<UnitRecord[]>(mesh, "GET", "/units")).body.filter((u) => u.worktype === worktype);
  return (await api<UnitRecord>(mesh, "GET", `/units/${units[units.length - 1]!.id}`)).body;
}

const digest = (bytes: Buffer) => `${createHash("sha256").update(bytes).digest("hex")}  -\n`;

describe("streaming payloads", () => {
  it("a streaming work type starts while the producer is still writing, and reads the payload byte for byte", async () => {
    const head = randomBytes(300_000);
    const tail = randomBytes(2_500_000);
    await writeFile(join(dir, "head"), head);
    await writeFile(join(dir, "tail"), tail);
    // The producer writes a first part, waits 1.5 s, then the rest: the unit must start in between.
    const started = Date.now();
    const result = await sh(
      mesh,
      `{ cat ${dir}/head; sleep 1.5; date +%s%3N > ${dir}/second-part-at; cat ${dir}/tail; } | $MESHCTL work submit stream-sha -f -p -`,
    );
    expect(result.stderr).toBe("");
    expect(result.code).toBe(0);
    expect(result.stdout.toString()).toBe(digest(Buffer.concat([head, tail])));
    const unit = await unitOf("stream-sha");
    expect(unit.payloadSize).toBe(head.byteLength + tail.byteLength);
    const spawned = loggedAt("unit:started", unit.id)!;
    const secondPart = Number(readFileSync(join(dir, "second-part-at"), "utf8"));
    expect(spawned).toBeGreaterThan(started);
    expect(spawned).toBeLessThan(secondPart);
  });

  it("a work type without streamingpayload waits for the whole payload, then runs on all of it", async () => {
    const body = randomBytes(200_000);
    await writeFile(join(dir, "whole"), body);
    const result = await sh(
      mesh,
      `{ head -c 1000 ${dir}/whole; sleep 1; date +%s%3N > ${dir}/rest-at; tail -c +1001 ${dir}/whole; } | $MESHCTL work submit whole-sha -f -p -`,
    );
    expect(result.stderr).toBe("");
    expect(result.stdout.toString()).toBe(digest(body));
    const unit = await unitOf("whole-sha");
    const rest = Number(readFileSync(join(dir, "rest-at"), "utf8"));
    expect(loggedAt("unit:started", unit.id)!).toBeGreaterThan(rest);
  });

  it("an empty stream runs the command on an empty stdin", async () => {
    const result = await sh(mesh, "true | $MESHCTL work submit stream-sha -f -p -");
    expect(result.code).toBe(0);
    expect(result.stdout.toString()).toBe(digest(Buffer.alloc(0)));
  });

  it("an upload cut mid-stream fails the unit and stops the command started early", async () => {
    // meshctl is killed while its producer still writes: the body ends without its end marker.
    const result = await sh(
      mesh,
      `( { head -c 5000 /dev/zero; sleep 30; } | $MESHCTL work submit stream-cat -p - & echo $! > ${dir}/meshctl.pid; wait ) & sleep 2.5; kill -9 $(cat ${dir}/meshctl.pid); sleep 0.2; echo killed`,
    );
    expect(result.stdout.toString()).toContain("killed");
    const unit = await unitOf("stream-cat");
    // It started on the first bytes (cat runs on anything), then the upload broke.
    await waitFor(() => loggedAt("unit:started", unit.id) !== null, "the command to start", 20_000);
    const finished = await waitFinished(mesh, unit.id, 30_000);
    expect(finished.state).toBe("Failed");
    expect(finished.detail).toMatch(/payload_incomplete/);
    await waitFor(() => loggedAt("unit:exited", finished.id) !== null, "the command to be stopped", 20_000);
  });

  it("an agent killed while it feeds the stdin: the command reads a cut stream, and the unit fails whatever its exit", {
    timeout: 90_000,
  }, async () => {
    const config = "- work-command: {worktype: cut-sha, command: sha256sum, streamingpayload: true}\n";
    const first = await startAgent({ mesh, nodeId: "feeder", config });
    const submitted = sh(
      mesh,
      `{ head -c 1000 /dev/zero; sleep 4; head -c 1000 /dev/zero; } | $MESHCTL work submit cut-sha -f -p -`,
    );
    let id = "";
    await waitFor(
      async () => {
        const units = (await api<UnitRecord[]>(mesh, "GET", "/units")).body.filter((u) => u.worktype === "cut-sha");
        id = units[0]?.id ?? "";
        return id !== "" && first.logs().includes('"unit:started"');
      },
      "the command to start on the first bytes",
      30_000,
    );
    // Killed mid-feed: its supervisor and sha256sum live on, and sha256sum sees its stdin end early.
    first.process.kill("SIGKILL");
    const second = await startAgent({ mesh, nodeId: "feeder", config, workDir: first.workDir });
    try {
      const done = await waitFinished(mesh, id, 60_000);
      // sha256sum exits 0 on the 1,000 bytes it got; the unit must not pass for a success.
      expect(done.state).toBe("Failed");
      expect(done.detail).toMatch(/^payload_incomplete: the agent restarted while it fed the streaming payload/);
      const result = await submitted;
      expect(result.code).not.toBe(0);
    } finally {
      await second.stop();
    }
  });

  it("a framed body with bytes after its end marker, or a wrong framing header, is refused", async () => {
    const wrong = await api<{ error: { code: string } }>(mesh, "POST", "/units?worktype=whole-sha", {
      headers: { "mesh-payload-framing": "chunks" },
      body: "x",
    });
    expect(wrong.status).toBe(400);
    expect(wrong.body.error.code).toBe("bad_request");
    // A whole framed payload, then a stray byte: refused, and the unit does not run.
    const piece = Buffer.from([0, 0, 0, 2, 0x68, 0x69, 0, 0, 0, 0, 0x21]);
    const trailing = await api<{ error: { code: string; message: string } }>(
      mesh,
      "POST",
      "/units?worktype=whole-sha",
      {
        headers: { "mesh-payload-framing": "pieces" },
        body: piece,
      },
    );
    expect(trailing.status).toBe(400);
    expect(trailing.body.error.message).toMatch(/after its end marker/);
    // The same without the stray byte is a whole two-byte payload.
    const whole = await api<UnitRecord>(mesh, "POST", "/units?worktype=whole-sha", {
      headers: { "mesh-payload-framing": "pieces" },
      body: piece.subarray(0, 10),
    });
    expect(whole.status).toBe(201);
    const done = await waitFinished(mesh, whole.body.id);
    expect(done.state).toBe("Succeeded");
    expect(done.payloadSize).toBe(2);
  });
});
