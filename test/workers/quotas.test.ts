/**
 * Quotas reached, on a Worker of this file's own with small limits (the `workers-quotas` project of
 * vitest.config.ts): pending units per token (MAX_PENDING_PER_SUBMITTER = 2, while the mesh-wide
 * MAX_PENDING_UNITS stays far off) and nodes per mesh (MAX_NODES = 2). The other tests' limits are
 * the defaults, too large to reach.
 */
import { afterAll, describe, expect, it } from "vitest";
import type { BrokerControlMessage } from "../../shared/protocol.js";
import { ADMIN, type RawSocket, api, joinNode as join } from "./harness.js";

const admin = ADMIN;
const mesh = "quotas";
const sockets: RawSocket<BrokerControlMessage>[] = [];

afterAll(() => {
  for (const socket of sockets) socket.close();
});

async function call<T>(
  method: "GET" | "POST" | "DELETE",
  path: string,
  token: string,
  body?: string,
): Promise<{ status: number; body: T }> {
  const headers: Record<string, string> = {};
  if (body !== undefined && path === "/tokens") headers["content-type"] = "application/json";
  return api<T>(mesh, method, path, { token, headers, ...(body !== undefined ? { body } : {}) });
}

async function token(role: string): Promise<string> {
  const created = await call<{ token: string }>("POST", "/tokens", admin, JSON.stringify({ role }));
  expect(created.status).toBe(201);
  return created.body.token;
}

/** A unit that stays pending: pinned, with a ttl, to a node that never comes. */
const park = (as: string) =>
  call<{ error?: { code: string } }>("POST", "/units?worktype=sh&node=never-comes&ttl=1h", as, "");

/** Opens a control socket for `nodeId` and says hello; answers the first thing the broker says. */
async function joinNode(
  nodeId: string,
  as: string,
): Promise<{ socket: RawSocket<BrokerControlMessage>; first: BrokerControlMessage }> {
  const joined = await join({ mesh, token: as }, nodeId, ["sh"]);
  sockets.push(joined.socket);
  return joined;
}

describe("quotas", () => {
  it("MAX_PENDING_PER_SUBMITTER counts per token: a full token is refused, a second token still submits", async () => {
    const [first, second] = [await token("submit"), await token("submit")];
    expect((await park(first)).status).toBe(201);
    expect((await park(first)).status).toBe(201);
    const refused = await park(first);
    expect(`${refused.status} ${refused.body.error?.code}`).toBe("429 limit_exceeded");
    expect((await park(second)).status).toBe(201);
    expect((await park(second)).status).toBe(201);
    expect((await park(second)).status).toBe(429);
    // The admin token is a principal of its own too.
    expect((await park(admin)).status).toBe(201);
  });

  it("MAX_NODES: a third node id is refused at the socket; a known node reconnects; removing one frees its place", async () => {
    const agent = await token("agent");
    const one = await joinNode("node-1", agent);
    expect(one.first.type).toBe("welcome");
    expect((await joinNode("node-2", agent)).first.type).toBe("welcome");
    const third = await joinNode("node-3", agent);
    expect(third.first).toMatchObject({ type: "error", error: { code: "limit_exceeded" } });
    expect((await third.socket.closedWith()).code).toBe(4404);
    // node-1 is counted already: its own credential brings it back while the mesh is full.
    one.socket.close();
    await one.socket.closedWith();
    const credential = one.first.type === "welcome" ? one.first.credential : undefined;
    expect(credential).toMatch(/^mnc_/);
    expect((await joinNode("node-1", credential!)).first.type).toBe("welcome");
    expect((await call("DELETE", "/nodes/node-2", admin)).status).toBe(200);
    expect((await joinNode("node-3", agent)).first.type).toBe("welcome");
  });
});
