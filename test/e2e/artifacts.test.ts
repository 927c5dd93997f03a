/**
 * A unit's artifacts tar and `meshctl work events`/`work artifacts`, against the real broker and
 * agent: the tar holds what `ansible-runner process` writes, byte for byte, with Debian's
 * ansible-runner (those tests are skipped, saying why, where it is not installed).
 */
import { spawnSync } from "node:child_process";
import { readFile, readdir, stat } from "node:fs/promises";
import { join } from "node:path";
import { Readable } from "node:stream";
import { extract } from "tar-stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ROOT } from "../../scripts/local-broker.js";
import type { UnitRecord, UnitSummary } from "../../shared/unit.js";
import { startCutProxy } from "./cut-proxy.js";
import {
  type RunningAgent,
  api,
  broker,
  createToken,
  newMesh,
  sh,
  startAgent,
  submitScript,
  tempDir,
  waitFinished,
  waitFor,
} from "./harness.js";

const mesh = newMesh();
const RUNNER = spawnSync("sh", ["-c", "command -v ansible-runner"]).status === 0;
if (!RUNNER)
  console.warn(
    "artifacts.test.ts: ansible-runner is not installed (apt-get install -y ansible-core python3-ansible-runner): its tests are skipped",
  );
let agent: RunningAgent;
let dir: string;
let readToken: string;

interface UnitEvent {
  seq: number;
  kind: string;
  stdout?: string;
}

/** name → contents of every file in a tar (directories left out). */
async function untar(bytes: Buffer): Promise<Map<string, Buffer>> {
  const files = new Map<string, Buffer>();
  const reader = extract();
  const done = (async () => {
    for await (const entry of reader) {
      const chunks: Buffer[] = [];
      for await (const chunk of entry) chunks.push(chunk as Buffer);
      if (entry.header.type === "file") files.set(entry.header.name, Buffer.concat(chunks));
    }
  })();
  Readable.from([bytes]).pipe(reader);
  await done;
  return files;
}

/** Every file under `root`, as paths relative to `base`. */
async function filesUnder(base: string, root = base): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(root, { withFileTypes: true })) {
    const path = join(root, entry.name);
    if (entry.isDirectory()) out.push(...(await filesUnder(base, path)));
    else out.push(path.slice(base.length + 1));
  }
  return out.sort();
}

/** Every event of a unit through the JSON pages. */
async function pagedEvents(id: string, after = 0): Promise<UnitEvent[]> {
  const events: UnitEvent[] = [];
  for (;;) {
    const page = await api<{ events: UnitEvent[]; last: number }>(
      mesh,
      "GET",
      `/units/${id}/events?after=${after}&limit=1000`,
    );
    events.push(...page.body.events);
    if (page.body.events.length < 1000) return events;
    after = page.body.last;
  }
}

const jsonLines = (out: Buffer) =>
  out
    .toString()
    .split("\n")
    .filter(Boolean)
    .map((l) => JSON.parse(l) as UnitEvent);

beforeAll(async () => {
  dir = await tempDir();
  agent = await startAgent({
    mesh,
    nodeId: "artifacts-node",
    config: `
- work-command: {worktype: ansible-runner, command: ansible-runner, params: worker}
- work-command: {worktype: sh, command: sh, params: "-c", allowruntimeparams: true}
`,
  });
  readToken = (await createToken(mesh, "read", { name: "reader" })).token;
});

afterAll(async () => {
  await agent.stop();
});

describe(`artifacts of an ansible-runner unit${RUNNER ? "" : " (skipped: ansible-runner is not installed)"}`, () => {
  let id: string;

  beforeAll(async () => {
    if (!RUNNER) return;
    const run = await sh(
      mesh,
      `ansible-runner transmit demo -p site.yml | $MESHCTL work submit ansible-runner -f -p - > ${dir}/results`,
    );
    expect(run.code, run.stderr).toBe(0);
    const units = (await api<UnitSummary[]>(mesh, "GET", "/units")).body;
    id = units.find((u) => u.worktype === "ansible-runner")!.id;
  });

  it.skipIf(!RUNNER)(
    "are what ansible-runner process writes from the results, file for file and byte for byte",
    async () => {
      const saved = await sh(mesh, `$MESHCTL work artifacts ${id} -o ${dir}/a.tar`);
      expect(saved.code, saved.stderr).toBe(0);
      const processed = await sh(mesh, `ansible-runner process ${dir}/out < ${dir}/results`);
      expect(processed.code, processed.stderr).toBe(0);

      const tar = await untar(await readFile(join(dir, "a.tar")));
      const expected = (await filesUnder(join(dir, "out"))).filter((f) => f !== "daemon.log");
      expect([...tar.keys()].sort()).toEqual(expected);
      const events = expected.filter((f) => f.startsWith("artifacts/job_events/"));
      expect(events.length).toBeGreaterThan(3);
      expect(events.some((f) => /^artifacts\/job_events\/1-[0-9a-f-]+\.json$/.test(f))).toBe(true);
      for (const name of expected) {
        const want = await readFile(join(dir, "out", name));
        expect(tar.get(name)!.equals(want), `${name} differs`).toBe(true);
      }
      expect(tar.get("artifacts/status")!.toString()).toBe("successful");
      expect(tar.get("artifacts/rc")!.toString()).toBe("0");
      expect((await stat(join(dir, "a.tar"))).mode & 0o777).toBe(0o600);
    },
  );

  it.skipIf(!RUNNER)("mask the environment in command for a read token", async () => {
    const full = await sh(mesh, `$MESHCTL work artifacts ${id} -o -`);
    const masked = await sh(mesh, `MESH_TOKEN=${readToken} $MESHCTL work artifacts ${id} -o -`);
    expect(masked.code, masked.stderr).toBe(0);
    const command = (out: Buffer) =>
      untar(out).then(
        (t) => JSON.parse(t.get("artifacts/command")!.toString()) as { env: Record<string, string>; command: string[] },
      );
    const [mine, theirs] = await Promise.all([command(full.stdout), command(masked.stdout)]);
    expect(Object.keys(theirs.env)).toEqual(Object.keys(mine.env));
    expect(Object.values(theirs.env).every((v) => v === "********")).toBe(true);
    expect(Object.values(mine.env).some((v) => v !== "********")).toBe(true);
    expect(theirs.command).toEqual(mine.command);
  });

  it.skipIf(!RUNNER)(
    "`meshctl work events` prints the events the JSON API pages through, from --after on",
    async () => {
      const all = await sh(mesh, `$MESHCTL work events ${id}`);
      expect(all.code, all.stderr).toBe(0);
      const api = await pagedEvents(id);
      expect(jsonLines(all.stdout)).toEqual(api);
      expect(api.map((e) => e.kind)).toContain("event");
      const tail = await sh(mesh, `$MESHCTL work events ${id} --after 3`);
      expect(jsonLines(tail.stdout)).toEqual(api.slice(3));
    },
  );
});

describe("artifacts of a 10,000-event runner stream", () => {
  it("list every event, with status and rc from the unit when its zip does not read", async () => {
    // The generator's "zip" is 100 bytes of 7s: not an archive, so the tar is built without it.
    const unit = await submitScript(mesh, `node ${join(ROOT, "test/e2e/fixtures/runner-stream.mjs")} 10000`);
    expect((await waitFinished(mesh, unit.id)).state).toBe("Succeeded");
    const started = Date.now();
    const saved = await sh(mesh, `$MESHCTL work artifacts ${unit.id} -o ${dir}/many.tar`);
    expect(saved.code, saved.stderr).toBe(0);
    const elapsed = Date.now() - started;
    const tar = await untar(await readFile(join(dir, "many.tar")));
    const events = [...tar.keys()].filter((k) => k.startsWith("artifacts/job_events/"));
    expect(events).toHaveLength(10_000);
    expect(events[9_999]).toBe("artifacts/job_events/10000-00000000-0000-0000-0000-000000010000.json");
    expect(JSON.parse(tar.get(events[41]!)!.toString())).toMatchObject({ counter: 42, event: "runner_on_ok" });
    expect(tar.get("artifacts/status")!.toString()).toBe("successful");
    expect(tar.get("artifacts/rc")!.toString()).toBe("0");
    console.log(`artifacts.test.ts: a 10,000-event tar downloaded in ${elapsed} ms`);
  });
});

describe("artifacts of any other command", () => {
  it("are its raw output as stdout, its exit code and its outcome", async () => {
    const unit = await submitScript(mesh, "printf 'one\\ntwo\\n'; printf 'three' >&2; exit 3");
    expect((await waitFinished(mesh, unit.id)).state).toBe("Failed");
    const saved = await sh(mesh, `$MESHCTL work artifacts ${unit.id} -o -`);
    expect(saved.code, saved.stderr).toBe(0);
    const tar = await untar(saved.stdout);
    expect([...tar.keys()]).toEqual(["artifacts/stdout", "artifacts/rc", "artifacts/status"]);
    expect(tar.get("artifacts/stdout")!.toString()).toBe("one\ntwo\nthree");
    expect(tar.get("artifacts/rc")!.toString()).toBe("3");
    expect(tar.get("artifacts/status")!.toString()).toBe("failed");
  });
});

describe("meshctl work events -f", () => {
  it("follows a running unit and exits 0 when it ends, every event printed once", async () => {
    const unit = await submitScript(mesh, "for i in 1 2 3 4; do echo line $i; sleep 0.4; done");
    const started = Date.now();
    const followed = await sh(mesh, `$MESHCTL work events ${unit.id} -f`);
    expect(followed.code, followed.stderr).toBe(0);
    expect(Date.now() - started).toBeGreaterThan(1000);
    expect((await api<UnitRecord>(mesh, "GET", `/units/${unit.id}`)).body.state).toBe("Succeeded");
    const printed = jsonLines(followed.stdout);
    expect(printed.map((e) => e.stdout).join("\n")).toBe("line 1\nline 2\nline 3\nline 4");
    expect(printed).toEqual(await pagedEvents(unit.id));
  });

  it("rides out a connection cut mid-stream: it resumes with Last-Event-ID, every event printed once", async () => {
    const proxy = await startCutProxy(Number(new URL(broker().url).port));
    try {
      const unit = await submitScript(mesh, "for i in $(seq 1 12); do echo line $i; sleep 0.25; done");
      const following = sh(mesh, `MESH_BROKER=${proxy.url} $MESHCTL work events ${unit.id} -f`);
      await waitFor(() => proxy.bytes.down > 0, "the event stream to start");
      await new Promise((r) => setTimeout(r, 1000));
      expect(proxy.cutAll()).toBeGreaterThan(0);
      const followed = await following;
      expect(followed.code, followed.stderr).toBe(0);
      const printed = jsonLines(followed.stdout);
      expect(printed.map((e) => e.stdout).join("\n")).toBe(
        Array.from({ length: 12 }, (_, i) => `line ${i + 1}`).join("\n"),
      );
      expect(printed).toEqual(await pagedEvents(unit.id));
    } finally {
      await proxy.close();
    }
  });
});

describe("errors", () => {
  it("an unknown unit: 404 unknown_unit, meshctl exits non-zero and leaves no file", async () => {
    const reply = await api<{ error: { code: string } }>(mesh, "GET", "/units/AAAAAAAA/artifacts");
    expect(reply.status).toBe(404);
    expect(reply.body.error.code).toBe("unknown_unit");
    for (const command of [
      "work events AAAAAAAA",
      "work events AAAAAAAA -f",
      `work artifacts AAAAAAAA -o ${dir}/unknown.tar`,
    ]) {
      const run = await sh(mesh, `$MESHCTL ${command}`);
      expect(run.code, command).toBe(1);
      expect(run.stderr).toMatch(/meshctl: unknown_unit: /);
    }
    expect((await readdir(dir)).filter((f) => f.includes("unknown"))).toEqual([]);
  });

  it("a released unit: 410 unit_released", async () => {
    const unit = await submitScript(mesh, "echo bye");
    await waitFinished(mesh, unit.id);
    expect((await api(mesh, "DELETE", `/units/${unit.id}`)).status).toBe(200);
    const reply = await api<{ error: { code: string } }>(mesh, "GET", `/units/${unit.id}/artifacts`, {
      token: readToken,
    });
    expect(reply.status).toBe(410);
    expect(reply.body.error.code).toBe("unit_released");
    for (const command of [`work events ${unit.id} -f`, `work artifacts ${unit.id} -o ${dir}/released.tar`]) {
      const run = await sh(mesh, `$MESHCTL ${command}`);
      expect(run.code, command).toBe(1);
      expect(run.stderr).toMatch(/meshctl: unit_released: /);
    }
    expect((await readdir(dir)).filter((f) => f.includes("released"))).toEqual([]);
  });
});
