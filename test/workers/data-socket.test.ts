/**
 * The Unit object's side of the data socket, driven frame by frame by a hand-spoken agent
 * (harness.ts): duplicates and overlaps, a `finished` that claims bytes the broker lacks, a node
 * lost between attach and start, line events that may hold the environment. A real agent never
 * sends these on cue, so each is checked here to the byte, ack and code.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { decodeFrame } from "../../shared/frames.js";
import { END_PIECE, PAYLOAD_FRAMING, PAYLOAD_FRAMING_HEADER, encodePiece } from "../../shared/payload-framing.js";
import type { BrokerControlMessage } from "../../shared/protocol.js";
import type { UnitRecord } from "../../shared/unit.js";
import {
  ADMIN,
  type Endpoint,
  type RawSocket,
  api,
  attachUnit,
  createToken,
  joinNode,
  newMesh,
  rawNode,
  waitFor,
} from "./harness.js";

const mesh = newMesh();
let endpoint: Endpoint;
let control: RawSocket<BrokerControlMessage>;

beforeAll(async () => {
  endpoint = { token: ADMIN, mesh };
  control = await rawNode(endpoint, "hand", ["raw"], 20);
});

afterAll(() => control?.close());

/** broker/unit/event-log.ts MASKED_LINE, as a reader sees it (that module is Worker code). */
const MASKED_LINE = "(masked: this line may hold the worker's environment; a token that may submit sees it)";

const byteLength = (text: string) => new TextEncoder().encode(text).byteLength;

const unit = async (id: string) => (await api<UnitRecord>(mesh, "GET", `/units/${id}`)).body;

/** Submits a unit of work type `raw` and waits for the broker to assign it on `to`. */
async function assigned(to: RawSocket<BrokerControlMessage>, query = ""): Promise<string> {
  const created = await api<UnitRecord>(mesh, "POST", `/units?worktype=raw${query}`, { body: "payload" });
  expect(created.status).toBe(201);
  expect(await to.next()).toEqual({ type: "assign", unitId: created.body.id, worktype: "raw" });
  return created.body.id;
}

describe("results frames", () => {
  it("a duplicate frame is acknowledged and dropped, an overlapping one appends only its new bytes", async () => {
    const id = await assigned(control);
    const { data, attached } = await attachUnit(endpoint, id, "hand");
    expect(attached).toMatchObject({ state: "Pending", resultsOffset: 0, cancel: false });
    data.ws.send(JSON.stringify({ type: "started", pid: 1 }));
    data.results(0, "hello ");
    expect(await data.next()).toEqual({ type: "results-ack", offset: 6 });
    data.results(0, "hello ");
    expect(await data.next()).toEqual({ type: "results-ack", offset: 6 });
    data.results(3, "lo world");
    expect(await data.next()).toEqual({ type: "results-ack", offset: 11 });
    data.results(2, "llo");
    expect(await data.next()).toEqual({ type: "results-ack", offset: 11 });
    data.results(12, "!");
    expect(await data.next()).toMatchObject({ type: "error", error: { code: "results_gap" } });
    expect((await api(mesh, "GET", `/units/${id}/results`)).body).toBe("hello world");
    expect(await unit(id)).toMatchObject({ state: "Running", stdoutSize: 11 });
    data.close();
  });
});

describe("group commit of results (broker/unit/results-batch.ts)", () => {
  /** As large as a frame may be (shared/frames.ts CHUNK_BYTES), as the agent sends them. */
  const MIB = 1024 * 1024 - 1024;
  /** `n` full frames, each filled with its own letter. */
  const frames = (n: number) => Array.from({ length: n }, (_, i) => String.fromCharCode(97 + (i % 26)).repeat(MIB));

  it("frames sent back to back are acknowledged together, an ack never past the bytes sent, the last at the end", async () => {
    const id = await assigned(control);
    const { data } = await attachUnit(endpoint, id, "hand");
    data.ws.send(JSON.stringify({ type: "started", pid: 1 }));
    const sent = frames(6);
    for (const [i, text] of sent.entries()) data.results(i * MIB, text);
    const acks: number[] = [];
    while (acks.at(-1) !== 6 * MIB) {
      const ack = await data.next();
      expect(ack.type).toBe("results-ack");
      acks.push((ack as { offset: number }).offset);
    }
    // At most one ack a frame (fewer when frames came in during a write: results-batch.ts), increasing.
    console.log(`batched acks: ${acks.length} for 6 frames`);
    expect(acks.length).toBeLessThanOrEqual(6);
    expect(acks).toEqual([...acks].sort((a, b) => a - b));
    expect((await api(mesh, "GET", `/units/${id}/results`)).body).toBe(sent.join(""));
    expect(await unit(id)).toMatchObject({ state: "Running", stdoutSize: 6 * MIB });
    data.close();
  });

  it("a link cut between the write and its ack: the next attach resumes from what is stored, the resend completes the stream byte for byte", async () => {
    const id = await assigned(control);
    const first = await attachUnit(endpoint, id, "hand");
    first.data.ws.send(JSON.stringify({ type: "started", pid: 1 }));
    const sent = frames(5);
    // The socket goes while writes and acks are under way.
    for (const [i, text] of sent.entries()) first.data.results(i * MIB, text);
    await new Promise((resolve) => setTimeout(resolve, 50));
    first.data.close();
    const { data, attached } = await attachUnit(endpoint, id, "hand");
    if (attached.type !== "attached") throw new Error("not attached");
    const from = attached.resultsOffset;
    // Whatever was stored is a prefix of what was sent, on a frame boundary, and nothing more.
    expect(from % MIB).toBe(0);
    expect(from).toBeLessThanOrEqual(5 * MIB);
    expect(await unit(id)).toMatchObject({ stdoutSize: from });
    for (let i = from / MIB; i < 5; i++) data.results(i * MIB, sent[i]!);
    // And one frame from before the resume point, as a resend after a lost ack would be: dropped.
    if (from > 0) data.results(from - MIB, sent[from / MIB - 1]!);
    let last = from;
    while (last !== 5 * MIB) {
      const ack = await data.next();
      expect(ack.type).toBe("results-ack");
      last = (ack as { offset: number }).offset;
      expect(last).toBeLessThanOrEqual(5 * MIB);
    }
    data.ws.send(
      JSON.stringify({ type: "finished", exitCode: 0, signal: null, resultsSize: 5 * MIB, canceled: false }),
    );
    await waitFor(async () => (await unit(id)).state === "Succeeded", "the unit to succeed");
    expect((await api(mesh, "GET", `/units/${id}/results`)).body).toBe(sent.join(""));
    data.close();
  });
});

describe("finished", () => {
  it("is refused results_incomplete while the broker holds fewer bytes than it claims; the unit runs on", async () => {
    const id = await assigned(control);
    const { data } = await attachUnit(endpoint, id, "hand");
    data.ws.send(JSON.stringify({ type: "started", pid: 1 }));
    data.results(0, "abc");
    expect(await data.next()).toEqual({ type: "results-ack", offset: 3 });
    data.ws.send(JSON.stringify({ type: "finished", exitCode: 0, signal: null, resultsSize: 5, canceled: false }));
    expect(await data.next()).toEqual({
      type: "error",
      error: { code: "results_incomplete", message: "finished with 5 bytes of results but 3 are stored" },
    });
    expect(await unit(id)).toMatchObject({ state: "Running", stdoutSize: 3, exitCode: null });
    // The agent resends what was missing, then reports again: now it counts.
    data.results(3, "de");
    expect(await data.next()).toEqual({ type: "results-ack", offset: 5 });
    data.ws.send(JSON.stringify({ type: "finished", exitCode: 2, signal: null, resultsSize: 5, canceled: false }));
    expect(await data.next()).toEqual({ type: "closed", state: "Failed", exitRecorded: true });
    expect(await unit(id)).toMatchObject({ state: "Failed", detail: "exit status 2", exitCode: 2, stdoutSize: 5 });
    expect((await api(mesh, "GET", `/units/${id}/results`)).body).toBe("abcde");
    data.close();
  });
});

describe("node lost", () => {
  it("after attach but before started fails the unit (it may have run); an unattached one goes back to the queue", async () => {
    const doomed = await rawNode(endpoint, "doomed", ["raw"], 2);
    const attachedId = await assigned(doomed, "&node=doomed");
    const waitingId = await assigned(doomed, "&node=doomed");
    const { data } = await attachUnit(endpoint, attachedId, "doomed");
    expect((await api(mesh, "DELETE", "/nodes/doomed")).status).toBe(200);
    expect(await unit(attachedId)).toMatchObject({
      state: "Failed",
      detail: "node doomed was removed by an admin",
      startedAt: null,
    });
    expect(await data.next()).toEqual({ type: "closed", state: "Failed", exitRecorded: false });
    expect(await unit(waitingId)).toMatchObject({
      state: "Pending",
      node: null,
      detail: "waiting for node doomed (node doomed was removed by an admin)",
    });
    data.close();
    doomed.close();
  });
});

describe("line events", () => {
  it("a line that may hold the environment is masked for a read token and whole for the submitter", async () => {
    const reader = (await createToken(mesh, "read", { name: "watcher" })).token;
    const id = await assigned(control);
    const { data } = await attachUnit(endpoint, id, "hand");
    data.ws.send(JSON.stringify({ type: "started", pid: 1 }));
    // A runner stream whose next status line was cut by stderr: not JSON, but it names "env".
    const leaked = 'Traceback: {"env": {"MESH_SECRET": "hunter2"}}';
    const text = `{"status":"running","runner_ident":"r"}\n${leaked}\nplain\n{"eof": true}\n`;
    data.results(0, text);
    expect(await data.next()).toEqual({ type: "results-ack", offset: byteLength(text) });
    data.ws.send(
      JSON.stringify({ type: "finished", exitCode: 0, signal: null, resultsSize: byteLength(text), canceled: false }),
    );
    expect(await data.next()).toEqual({ type: "closed", state: "Succeeded", exitRecorded: true });
    type Page = { events: { kind: string; stdout?: string; data?: unknown }[] };
    await waitFor(
      async () => (await api<Page>(mesh, "GET", `/units/${id}/events`)).body.events.length === 3,
      "three events",
    );
    const asRead = (await api<Page>(mesh, "GET", `/units/${id}/events`, { token: reader })).body.events;
    const asAdmin = (await api<Page>(mesh, "GET", `/units/${id}/events`)).body.events;
    expect(asAdmin.map((e) => [e.kind, e.stdout])).toEqual([
      ["status", undefined],
      ["line", leaked],
      ["line", "plain"],
    ]);
    expect(asRead.map((e) => [e.kind, e.stdout])).toEqual([
      ["status", undefined],
      ["line", MASKED_LINE],
      ["line", "plain"],
    ]);
    expect(JSON.stringify(asRead)).not.toContain("hunter2");
    data.close();
  });
});

describe("a socket the broker closed", () => {
  it("takes nothing more: frames the agent sent behind a refusal that closed it are not stored", async () => {
    const id = await assigned(control);
    const { data } = await attachUnit(endpoint, id, "hand");
    // Refused and closed (a pull larger than PULL_MAX), with a results frame right behind it.
    data.ws.send(JSON.stringify({ type: "payload-pull", offset: 0, length: 2 * 1024 * 1024 }));
    data.results(0, "after the refusal");
    expect(await data.next()).toMatchObject({ type: "error", error: { code: "window_exceeded" } });
    await data.closedWith();
    expect(await unit(id)).toMatchObject({ stdoutSize: 0 });
  });
});

describe("payload pulls", () => {
  const MIB = 1024 * 1024;

  it("a window of pulls made while the payload streamed is served whole when the upload ended before they came", async () => {
    const { socket: streamer, first } = await joinNode(endpoint, "streamer", ["rawstream"], 1, {
      streamingPayload: true,
    });
    expect(first.type).toBe("welcome");
    try {
      let producer!: ReadableStreamDefaultController<Uint8Array>;
      const body = new ReadableStream<Uint8Array>({
        start: (c) => {
          producer = c;
        },
      });
      const payload = new Uint8Array(1774).fill(42);
      producer.enqueue(encodePiece(payload));
      const submitted = api<UnitRecord>(mesh, "POST", "/units?worktype=rawstream", {
        body,
        headers: { [PAYLOAD_FRAMING_HEADER]: PAYLOAD_FRAMING },
      });
      const assign = await streamer.next();
      if (assign.type !== "assign") throw new Error(`expected assign, got ${JSON.stringify(assign)}`);
      const { data, attached } = await attachUnit(endpoint, assign.unitId, "streamer");
      // The agent learns here that the payload still streams, so it pulls a window ahead of it.
      expect(attached.type === "attached" && attached.unit.payloadStreaming).toBe(true);
      let bytes = 0;
      data.ws.addEventListener("message", (e) => {
        if (typeof e.data === "string") return;
        // A Blob at this compatibility date (the standard default for binary messages).
        void (e.data as Blob).arrayBuffer().then((buffer) => {
          const frame = decodeFrame(buffer);
          if (frame.ok) bytes += frame.value.data.byteLength;
        });
      });
      // The upload ends before the pulls reach the broker (the race the playbook bench hit).
      producer.enqueue(END_PIECE);
      producer.close();
      expect((await submitted).status).toBe(201);
      expect(await data.next()).toEqual({ type: "payload-end", size: 1774 });
      for (let i = 0; i < 4; i++) data.ws.send(JSON.stringify({ type: "payload-pull", offset: i * MIB, length: MIB }));
      await waitFor(() => bytes === 1774, "the whole payload");
      // No refusal follows (window_exceeded closed the socket before), and nothing past the end.
      await expect(data.next(500)).rejects.toThrow(/no message/);
      expect(bytes).toBe(1774);
      data.close();
    } finally {
      streamer.close();
    }
  });
});
