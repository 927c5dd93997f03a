/**
 * Inline starts (shared/protocol.ts InlineStart): a node whose work type says inlineStart gets a
 * small payload whole in its `assign`, and the unit counts as attached from then on (it may run
 * before the node attaches), so losing the node fails it instead of queueing it again. A node that
 * does not ask, or a payload over INLINE_PAYLOAD_BYTES, gets the plain assignment as before.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type BrokerControlMessage, INLINE_PAYLOAD_BYTES } from "../../shared/protocol.js";
import type { UnitRecord } from "../../shared/unit.js";
import { ADMIN, type Endpoint, type RawSocket, api, attachUnit, joinNode, newMesh } from "./harness.js";

const mesh = newMesh();
const endpoint: Endpoint = { token: ADMIN, mesh };
let node: RawSocket<BrokerControlMessage>;

/** Joins as `nodeId` offering work type `inline` with inlineStart. */
async function inlineNode(nodeId: string, capacity = 4): Promise<RawSocket<BrokerControlMessage>> {
  const { socket, first } = await joinNode(endpoint, nodeId, ["inline"], capacity, { inlineStart: true });
  expect(first.type).toBe("welcome");
  return socket;
}

beforeAll(async () => {
  node = await inlineNode("quick");
});

afterAll(() => node?.close());

const submit = async (body: string, query = "") => {
  const created = await api<UnitRecord>(mesh, "POST", `/units?worktype=inline${query}`, { body });
  expect(created.status).toBe(201);
  return created.body.id;
};

describe("inline start", () => {
  it("carries the unit and its whole payload, base64, to a node that asks for it", async () => {
    const id = await submit("echo hello");
    const assign = await node.next();
    expect(assign).toMatchObject({ type: "assign", unitId: id, worktype: "inline" });
    if (assign.type !== "assign" || !assign.start) throw new Error(`no inline start: ${JSON.stringify(assign)}`);
    expect(assign.start.unit).toMatchObject({
      id,
      mesh,
      worktype: "inline",
      payloadSize: 10,
      signature: null,
      targetNode: null,
    });
    expect(Buffer.from(assign.start.payload, "base64").toString()).toBe("echo hello");
    // What `attached` says of the unit is what the inline start said.
    const { data, attached } = await attachUnit(endpoint, id, "quick");
    if (attached.type !== "attached") throw new Error("not attached");
    expect(attached.unit).toEqual(assign.start.unit);
    data.close();
  });

  it("an empty payload goes inline too; one over INLINE_PAYLOAD_BYTES does not (the node downloads it)", async () => {
    const empty = await submit("");
    expect(await node.next()).toMatchObject({ type: "assign", unitId: empty, start: { payload: "" } });
    const large = await submit("x".repeat(INLINE_PAYLOAD_BYTES + 1));
    expect(await node.next()).toEqual({ type: "assign", unitId: large, worktype: "inline" });
  });

  it("a unit started inline may be running before the node attaches: losing the node fails it, it is not queued again", async () => {
    const doomed = await inlineNode("doomed-inline");
    const id = await submit("payload", "&node=doomed-inline");
    expect(await doomed.next()).toMatchObject({ type: "assign", unitId: id, start: { unit: { id } } });
    expect((await api(mesh, "DELETE", "/nodes/doomed-inline")).status).toBe(200);
    expect((await api<UnitRecord>(mesh, "GET", `/units/${id}`)).body).toMatchObject({
      state: "Failed",
      detail: "node doomed-inline was removed by an admin",
    });
    doomed.close();
  });
});
