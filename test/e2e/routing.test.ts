/** Routing, waiting for nodes, cancel and release, against real agents. */
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { request } from "undici";
import { afterAll, describe, expect, it } from "vitest";
import type { MeshStatus, UnitRecord } from "../../shared/unit.js";
import { type RunningAgent, api, broker, isAlive, newMesh, sh, startAgent, tempDir, waitFor } from "./harness.js";

const mesh = newMesh();
const agents: RunningAgent[] = [];
const SH = `- work-command: {worktype: sh, command: sh, params: "-c", allowruntimeparams: true}\n`;

afterAll(async () => {
  await Promise.all(agents.map((a) => a.stop()));
});

/** Runs `sh -c SCRIPT` on a node: the runtime params are one quoted word. */
async function submit(script: string, query = ""): Promise<UnitRecord> {
  const params = encodeURIComponent(`'${script}'`);
  const reply = await api<UnitRecord>(mesh, "POST", `/units?worktype=sh&param.params=${params}${query}`, { body: "" });
  expect(reply.status).toBe(201);
  return reply.body;
}

const unit = async (id: string) => (await api<UnitRecord>(mesh, "GET", `/units/${id}`)).body;
const until = (id: string, states: string[]) =>
  waitFor(async () => states.includes((await unit(id)).state), `unit ${id} to be ${states.join("/")}`);

describe("routing", () => {
  it("a unit for a node that has not joined waits Pending (given a ttl), then runs when it connects", async () => {
    agents.push(await startAgent({ mesh, nodeId: "alpha", config: SH, capacity: 1 }));
    const waiting = await submit("echo on-$0", "&node=beta&ttl=10m");
    expect(waiting.state).toBe("Pending");
    await new Promise((r) => setTimeout(r, 300));
    expect((await unit(waiting.id)).state).toBe("Pending");
    agents.push(await startAgent({ mesh, nodeId: "beta", config: SH, capacity: 1 }));
    await until(waiting.id, ["Succeeded"]);
    const record = await unit(waiting.id);
    expect(record.node).toBe("beta");
    expect((await api(mesh, "GET", `/units/${waiting.id}/results`)).body).toBe("on-sh\n");
  });

  it("spreads units over the least-loaded nodes; a third, beyond their capacity, waits unplaced until one is free", async () => {
    const gate = join(await tempDir(), "open");
    const held = `until [ -e ${gate} ]; do sleep 0.1; done; echo released`;
    const units = [await submit(held), await submit(held)];
    let third = "";
    try {
      await until(units[0]!.id, ["Running"]);
      await until(units[1]!.id, ["Running"]);
      const placed = [await unit(units[0]!.id), await unit(units[1]!.id)];
      expect(new Set(placed.map((u) => u.node))).toEqual(new Set(["alpha", "beta"]));
      // Placement runs before the submit is answered: both nodes are full, so the third stays queued.
      third = (await submit("echo third")).id;
      expect(await unit(third)).toMatchObject({ state: "Pending", node: null, detail: "waiting for a node" });
      const nodes = (await api<MeshStatus>(mesh, "GET", "/status")).body.nodes;
      expect(nodes.map((n) => [n.nodeId, n.activeUnits, n.capacity])).toEqual([
        ["alpha", 1, 1],
        ["beta", 1, 1],
      ]);
    } finally {
      // Opened whatever happened, so a failure here does not hold both nodes for the rest of the file.
      await writeFile(gate, "");
    }
    await until(third, ["Succeeded"]);
    expect(["alpha", "beta"]).toContain((await unit(third)).node);
    for (const u of units) expect((await unit(u.id)).state).toBe("Succeeded");
  });

  it("a command that exits 130 fails 'exit status 130', not 'signal: interrupt'", async () => {
    const { id } = await submit("echo bye; exit 130");
    await until(id, ["Failed"]);
    expect(await unit(id)).toMatchObject({ state: "Failed", detail: "exit status 130", exitCode: 130 });
  });

  it("cancel stops a running unit's process group; the unit ends Canceled", async () => {
    const dir = await tempDir();
    const pidFile = join(dir, "inner.pid");
    // A shell below the unit's own shell: cancel must reach it too (it signals the whole group).
    await writeFile(join(dir, "inner.sh"), `echo $$ > ${pidFile}\necho started\nsleep 60\n`);
    const running = await submit(`sh ${join(dir, "inner.sh")}`);
    await until(running.id, ["Running"]);
    await waitFor(
      async () => (await api(mesh, "GET", `/units/${running.id}/results`)).body === "started\n",
      "the unit's output",
    );
    const inner = Number((await readFile(pidFile, "utf8")).trim());
    const canceled = await sh(mesh, `$MESHCTL work cancel ${running.id}`);
    expect(canceled.code).toBe(0);
    await until(running.id, ["Canceled"]);
    expect((await unit(running.id)).detail).toBe("canceled");
    expect((await api(mesh, "GET", `/units/${running.id}/results`)).body).toBe("started\n");
    await waitFor(() => !isAlive(inner), `the unit's inner shell ${inner} to end`, 5_000);
  });

  it("release removes the results and leaves a Released tombstone", async () => {
    const done = await submit("echo bye");
    await until(done.id, ["Succeeded"]);
    const released = await sh(mesh, `$MESHCTL work release ${done.id}`);
    expect(released.code).toBe(0);
    expect((await unit(done.id)).state).toBe("Released");
    const results = await api<{ error: { code: string } }>(mesh, "GET", `/units/${done.id}/results`);
    expect(results.status).toBe(410);
    expect(results.body.error.code).toBe("unit_released");
  });

  it("meshctl lists units, shows one, and reads results from an offset", async () => {
    const done = await submit("printf 0123456789");
    await until(done.id, ["Succeeded"]);
    const list = await sh(mesh, "$MESHCTL work list");
    expect(JSON.parse(list.stdout.toString()).map((u: { id: string }) => u.id)).toContain(done.id);
    const status = await sh(mesh, `$MESHCTL work status ${done.id}`);
    expect(JSON.parse(status.stdout.toString())).toMatchObject({
      id: done.id,
      state: "Succeeded",
      stdoutSize: 10,
      worktype: "sh",
    });
    const tail = await sh(mesh, `$MESHCTL work results ${done.id} --offset 4`);
    expect(tail.stdout.toString()).toBe("456789");
    const following = await sh(mesh, `$MESHCTL work results ${done.id} -f --offset 8`);
    expect(following.stdout.toString()).toBe("89");
    expect(following.code).toBe(0);
    const nodes = await sh(mesh, "$MESHCTL status");
    expect(nodes.stdout.toString()).toMatch(/alpha\s+connected\s+0\/1\s+sh/);
  });

  it("another client adopts a running unit: a follower that died is resumed from its offset by a new one", async () => {
    // Long enough (7.5 s) that the first follower dies mid-unit even on a loaded machine.
    const running = await submit("for i in $(seq 10 39); do echo line-$i; sleep 0.25; done");
    await until(running.id, ["Running"]);
    // The first follower dies after 24 bytes (head exits, meshctl gets EPIPE), mid-unit.
    const first = await sh(mesh, `$MESHCTL work results ${running.id} -f | head -c 24`);
    expect(first.stdout.toString()).toBe("line-10\nline-11\nline-12\n");
    expect((await unit(running.id)).state).toBe("Running");
    const rest = await sh(mesh, `$MESHCTL work results ${running.id} -f --offset 24`);
    expect(rest.code).toBe(0);
    const expected = Array.from({ length: 30 }, (_, i) => `line-${i + 10}\n`).join("");
    expect(first.stdout.toString() + rest.stdout.toString()).toBe(expected);
  });

  it("the same Idempotency-Key twice gives one unit", async () => {
    const headers = { "idempotency-key": `key-${mesh}` };
    const first = await api<UnitRecord>(mesh, "POST", "/units?worktype=sh&param.params=%27echo%20once%27", {
      body: "",
      headers,
    });
    const second = await api<UnitRecord>(mesh, "POST", "/units?worktype=sh&param.params=%27echo%20once%27", {
      body: "",
      headers,
    });
    expect(first.status).toBe(201);
    expect(second.status).toBe(200);
    expect(second.body.id).toBe(first.body.id);
    await until(first.body.id, ["Succeeded"]);
    const list = await api<{ id: string }[]>(mesh, "GET", "/units");
    expect(list.body.filter((u) => u.id === first.body.id)).toHaveLength(1);
    expect((await api(mesh, "GET", `/units/${first.body.id}/results`)).body).toBe("once\n");
  });

  /** The id of the mesh's unit whose payload is still arriving. */
  const receivingUnit = async (): Promise<string> => {
    let id = "";
    await waitFor(async () => {
      const list = await api<{ id: string; detail: string }[]>(mesh, "GET", "/units");
      id = list.body.find((u) => u.detail === "receiving payload")?.id ?? "";
      return id !== "";
    }, "the unit to appear while its payload arrives");
    return id;
  };

  // Payloads over 32 KiB stream into their unit as it is made (smaller ones are read whole first).
  const FIRST_PART = "first part\n";
  const LARGE = 40_000;
  const REST = `${"x".repeat(LARGE - FIRST_PART.length - 1)}\n`;

  it("a retry with the same Idempotency-Key while the first upload still streams is refused upload_in_progress", async () => {
    const { url, token } = broker();
    const headers = { authorization: `Bearer ${token}`, "idempotency-key": `mid-${mesh}` };
    const path = `${url}/v1/meshes/${mesh}/units?worktype=sh&param.params=%27cat%27`;
    const body = new PassThrough();
    // Over 32 KiB: a smaller body is read whole by the Worker before any unit exists (small-body.ts).
    const first = request(path, { method: "POST", headers: { ...headers, "content-length": String(LARGE) }, body });
    body.write(FIRST_PART);
    const id = await receivingUnit();
    // The same request again (same length: an Idempotency-Key is bound to the request).
    const retry = await request(path, {
      method: "POST",
      headers: { ...headers, "content-length": String(LARGE) },
      body: Buffer.alloc(LARGE, "r"),
    });
    expect(retry.statusCode).toBe(409);
    expect(await retry.body.json()).toEqual({
      error: {
        code: "upload_in_progress",
        message: "the unit's payload is still being uploaded by an earlier request",
      },
    });
    body.end(REST);
    const answered = await first;
    expect(answered.statusCode).toBe(201);
    expect(((await answered.body.json()) as UnitRecord).id).toBe(id);
    await until(id, ["Succeeded"]);
    expect(await unit(id)).toMatchObject({ payloadSize: LARGE });
    expect((await api(mesh, "GET", `/units/${id}/results`)).body).toBe(FIRST_PART + REST);
  });

  it("a unit canceled while its payload is still arriving stays Canceled and never runs", async () => {
    const { url, token } = broker();
    const body = new PassThrough();
    const pending = request(`${url}/v1/meshes/${mesh}/units?worktype=sh&param.params=%27cat%27`, {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "content-length": String(LARGE) },
      body,
    });
    body.write(FIRST_PART);
    const id = await receivingUnit();
    await waitFor(async () => (await api<UnitRecord>(mesh, "GET", `/units/${id}`)).status === 200, "the unit record");
    expect((await api<UnitRecord>(mesh, "POST", `/units/${id}/cancel`)).body.state).toBe("Canceled");
    body.end(REST);
    const response = await pending;
    expect(response.statusCode).toBe(409);
    expect(((await response.body.json()) as { error: { code: string } }).error.code).toBe("illegal_transition");
    await new Promise((r) => setTimeout(r, 300));
    const record = await unit(id);
    expect(record.state).toBe("Canceled");
    expect(record.startedAt).toBeNull();
  });
});
