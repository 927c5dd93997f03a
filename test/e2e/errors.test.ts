/** Bad input gets a stable error code and a one-line message; broker and agent keep serving. */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Readable } from "node:stream";
import { WebSocket, request } from "undici";
import { encodeFrame } from "../../shared/frames.js";
import { PROTOCOL_VERSION } from "../../shared/protocol.js";
import { type RunningAgent, api, broker, newMesh, sh, startAgent } from "./harness.js";

const mesh = newMesh();
let agent: RunningAgent;

beforeAll(async () => {
  agent = await startAgent({ mesh, nodeId: "steady", config: "- work-command: {worktype: cat, command: cat}\n" });
});

afterAll(async () => {
  await agent.stop();
});

type ErrorReply = { error: { code: string; message: string } };

/** Opens a raw socket and collects the text frames the broker sends until it closes or we stop. */
function rawSocket(path: string) {
  const { url, token } = broker();
  const ws = new WebSocket(`${url.replace("http", "ws")}/v1/meshes/${mesh}${path}`, {
    headers: { authorization: `Bearer ${token}` },
  });
  const received: string[] = [];
  let closeCode: number | null = null;
  ws.addEventListener("message", (e) => typeof e.data === "string" && received.push(e.data));
  ws.addEventListener("close", (e) => (closeCode = e.code));
  const opened = new Promise<void>((resolve, reject) => {
    ws.addEventListener("open", () => resolve());
    ws.addEventListener("error", () => reject(new Error("socket failed")));
  });
  const next = async () => {
    const start = received.length;
    for (let i = 0; i < 100 && received.length === start; i++) await new Promise((r) => setTimeout(r, 50));
    return JSON.parse(received[start] ?? "null") as ErrorReply & { type: string };
  };
  return { ws, opened, next, closeCode: () => closeCode };
}

async function runsStill() {
  const result = await sh(mesh, "echo still-here | $MESHCTL work submit cat -f -p -");
  expect(result.code).toBe(0);
  expect(result.stdout.toString()).toBe("still-here\n");
}

describe("HTTP errors", () => {
  it("a payload of undeclared length (chunked) is refused 411 length_required, and no unit is made", async () => {
    const { url, token } = broker();
    const before = (await api<unknown[]>(mesh, "GET", "/units")).body.length;
    const response = await request(`${url}/v1/meshes/${mesh}/units?worktype=cat`, {
      method: "POST",
      headers: { authorization: `Bearer ${token}` },
      body: Readable.from([Buffer.from("streamed without a length")]),
    });
    expect(response.statusCode).toBe(411);
    expect(((await response.body.json()) as ErrorReply).error.code).toBe("length_required");
    expect((await api<unknown[]>(mesh, "GET", "/units")).body.length).toBe(before);
    await runsStill();
  });

  // The error table (routes, auth, validation) and a ttl-pinned unit: test/workers/errors.test.ts.

  it("meshctl reports the broker's code and exits 1", async () => {
    const result = await sh(mesh, "echo x | $MESHCTL work submit nosuch -p -");
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/^meshctl: unknown_worktype: no node of mesh .* offers work type nosuch\n$/);
  });

  it("a piped payload (streamed) still gets the broker's refusal, not a broken upload", async () => {
    // The producer is still writing when the broker refuses: the answer waits for the body's end.
    const slow = await sh(mesh, "{ echo x; sleep 1; echo y; } | $MESHCTL work submit nosuch -p -");
    expect(slow.code).toBe(1);
    expect(slow.stderr).toMatch(/^meshctl: unknown_worktype: /);
    const badToken = await sh(
      mesh,
      "{ echo x; sleep 1; echo y; } | MESH_TOKEN=mt_not_a_token $MESHCTL work submit sh -p -",
    );
    expect(badToken.code).toBe(1);
    expect(badToken.stderr).toMatch(/^meshctl: (unauthorized|forbidden): /);
  });
});

describe("protocol errors", () => {
  it("malformed control frames get error frames; the broker keeps serving", async () => {
    const s = rawSocket("/connect?node=prober");
    await s.opened;
    s.ws.send("this is not json");
    expect((await s.next()).error.code).toBe("bad_message");
    s.ws.send(JSON.stringify({ type: "hello", protocol: 1 }));
    expect((await s.next()).error.code).toBe("bad_message");
    s.ws.send(new Uint8Array([1, 2, 3]));
    expect((await s.next()).error.code).toBe("bad_frame");
    s.ws.send(JSON.stringify({ type: "reject", unit: "AAAAAAAA", error: { code: "internal", message: "x" } }));
    expect((await s.next()).error.message).toMatch(/hello first/);
    s.ws.send(
      JSON.stringify({
        type: "hello",
        protocol: 99,
        nodeId: "prober",
        workTypes: [],
        capacity: 1,
        tags: {},
        units: [],
        versions: { agent: "0", node: "v20", ansibleRunner: null, podman: null, podmanUsable: false },
      }),
    );
    expect((await s.next()).error.code).toBe("unsupported_protocol");
    s.ws.close();
    await runsStill();
  });

  it("a data socket from a node the unit is not assigned to is refused", async () => {
    const created = await api<{ id: string }>(mesh, "POST", "/units?worktype=cat", { body: "data" });
    const s = rawSocket(`/units/${created.body.id}/data?node=intruder`);
    await s.opened;
    s.ws.send(JSON.stringify({ type: "attach", protocol: PROTOCOL_VERSION, nodeId: "intruder" }));
    expect((await s.next()).error.code).toBe("not_assigned");
    const forger = rawSocket(`/units/${created.body.id}/data?node=intruder`);
    await forger.opened;
    forger.ws.send(encodeFrame("results", 0, new TextEncoder().encode("forged")));
    expect((await forger.next()).error.code).toBe("not_assigned");
    await runsStill();
    const results = await api(mesh, "GET", `/units/${created.body.id}/results`);
    expect(results.body).toBe("data");
  });
});

describe("agent input errors", () => {
  it("a bad config is a usage error with the problem named, exit 2", async () => {
    const result = await sh(
      mesh,
      `printf -- '- work-command: {worktype: "bad name", command: x}\\n' > /tmp/mesh-bad.yml; node dist/agent/cli.js --broker http://127.0.0.1:1 --token t --config /tmp/mesh-bad.yml`,
    );
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/work-command 1: worktype: work type names are/);
  });
});
