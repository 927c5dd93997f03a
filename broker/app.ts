/**
 * The broker's HTTP API. Routes validate and authenticate, then hand off to the mesh's Mesh object
 * (membership, routing, the unit index) or to one unit's Unit object (payload, results, status).
 */
import { type Context, Hono } from "hono";
import { parseDuration } from "../shared/duration.js";
import { MAX_SIGNATURE_CHARS } from "../shared/protocol.js";
import { MeshError, type Result, unwrap } from "../shared/errors.js";
import { NAME_PATTERN, UNIT_ID_PATTERN } from "../shared/ids.js";
import { type Principal, isRole } from "../shared/roles.js";
import type { UnitRecord, UnitSummary } from "../shared/unit.js";
import type { TokenInfo } from "../shared/api.js";
import { authenticate, authorize, authorizeNode, may } from "./auth.js";
import { logError } from "./log.js";
import type { UnitIndexRow } from "./mesh/store.js";

type AppEnv = { Bindings: Env; Variables: { principal: Principal } };
type Ctx = Context<AppEnv>;

export const app = new Hono<AppEnv>();

app.onError((error, c) => {
  if (error instanceof MeshError) return c.json(error.toBody(), error.status as 400);
  logError("http:unhandled", error, { path: c.req.path });
  return c.json(new MeshError("internal", "internal error").toBody(), 500);
});

app.notFound(async (c) => {
  // The dashboard's static files; anything they do not hold is the API's JSON 404.
  if ((c.req.method === "GET" || c.req.method === "HEAD") && !c.req.path.startsWith("/v1/")) {
    const asset = await c.env.ASSETS.fetch(c.req.raw);
    if (asset.status !== 404) return asset;
  }
  return c.json(new MeshError("unknown_route", `no route for ${c.req.method} ${c.req.path}`).toBody(), 404);
});

app.get("/healthz", (c) => c.json({ ok: true }));

app.use("/v1/meshes/:mesh/*", async (c, next) => {
  c.set("principal", await authenticate(c.req.header("authorization"), c.env, meshName(c)));
  await next();
});

const can = (c: Ctx, permission: Parameters<typeof authorize>[1]) => authorize(c.get("principal"), permission);

/**
 * `GET /units?records=1` answers whole records, one Unit object call each: bounded so one list stays
 * well inside a request's subrequest budget (1,000 on Cloudflare's paid plan), fetched a few at a time.
 */
const MAX_LISTED_RECORDS = 500;
const RECORD_BATCH = 16;
const submitterOf = (principal: Principal) => (principal.kind === "token" ? `token:${principal.tokenId}` : `node:${principal.nodeId}`);

function meshName(c: Ctx): string {
  const mesh = c.req.param("mesh") ?? "";
  if (!NAME_PATTERN.test(mesh)) throw new MeshError("bad_request", "mesh ids are 1-64 characters of [A-Za-z0-9._-]");
  return mesh;
}

function unitId(c: Ctx): string {
  const id = c.req.param("id") ?? "";
  if (!UNIT_ID_PATTERN.test(id)) throw new MeshError("bad_unit_id", "unit ids are 8 characters of [0-9a-zA-Z]");
  return id;
}

const meshStub = (c: Ctx, mesh: string) => c.env.MESH.get(c.env.MESH.idFromName(mesh));
const unitStub = (c: Ctx, mesh: string, id: string) => c.env.UNIT.get(c.env.UNIT.idFromName(`${mesh}/${id}`));

function requireUpgrade(c: Ctx): void {
  if (c.req.header("upgrade")?.toLowerCase() !== "websocket") {
    throw new MeshError("bad_request", "this endpoint takes a WebSocket upgrade");
  }
}

/** DO fetch handlers answer errors as JSON already; pass their responses through. */
function forward(response: Response): Response {
  return new Response(response.body, response);
}

/** How often a long-lived answer (SSE, a results follow) checks that its credential still holds. */
const RECHECK_MS = 3_000;

/**
 * Passes a long-lived answer through, ending it within RECHECK_MS once the credential that opened it
 * no longer authenticates: a revoked token, a removed node, an expired credential.
 *
 * Why polling here rather than pushing a close from the revoke: these streams are served by Mesh and
 * Unit objects the Access object knows nothing about, and the Worker invocation that serves the
 * stream is the one place that holds both the credential and the stream. One Access lookup per open
 * stream every few seconds covers every way a credential stops holding with one rule. Agent sockets
 * are different: after the 101 the Worker is out of their path, so revocation closes them by tag.
 */
function whileAuthorized(c: Ctx, response: Response): Response {
  if (!response.body || !response.ok) return forward(response);
  const header = c.req.header("authorization");
  const mesh = meshName(c);
  const reader = response.body.getReader();
  let timer: ReturnType<typeof setInterval> | null = null;
  let ended = false;
  const end = (controller: ReadableStreamDefaultController<Uint8Array>) => {
    if (ended) return;
    ended = true;
    if (timer !== null) clearInterval(timer);
    controller.close();
  };
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      timer = setInterval(() => {
        authenticate(header, c.env, mesh).catch((error: unknown) => {
          // Only a definite "no": a transient failure of the Access object must not cut streams.
          if (!(error instanceof MeshError) || error.code !== "unauthorized") return;
          void reader.cancel("credential revoked").catch(() => {});
          end(controller);
        });
      }, RECHECK_MS);
    },
    async pull(controller) {
      const { done, value } = await reader.read().catch(() => ({ done: true as const, value: undefined }));
      if (ended) return;
      if (done) return end(controller);
      controller.enqueue(value);
    },
    cancel(reason) {
      ended = true;
      if (timer !== null) clearInterval(timer);
      return reader.cancel(reason);
    },
  });
  return new Response(body, response);
}

/** Who opened an agent socket, as its object tags it, so revoking that credential can close it. */
export const openerTag = (principal: Principal) => (principal.kind === "token" ? `by:token:${principal.tokenId}` : `by:node:${principal.nodeId}`);

/**
 * RPC stubs wrap return types in the runtime's serialisation types, which defeats inference of
 * `Result<T>`; naming T at the call site restores it.
 */
function asResult<T>(result: Result<T>): T {
  return unwrap(result);
}

app.get("/v1/meshes/:mesh/connect", async (c) => {
  const mesh = meshName(c);
  requireUpgrade(c);
  const node = c.req.query("node") ?? "";
  if (!NAME_PATTERN.test(node)) throw new MeshError("bad_request", "node ids are 1-64 characters of [A-Za-z0-9._-]");
  const { joining } = authorizeNode(c.get("principal"), node);
  const url = new URL(c.req.url);
  // Set here, never taken from the client: the Mesh object trusts these.
  url.searchParams.set("mesh", mesh);
  url.searchParams.set("join", joining ? "1" : "0");
  url.searchParams.set("opener", openerTag(c.get("principal")));
  return meshStub(c, mesh).fetch(new Request(url, c.req.raw));
});

app.post("/v1/meshes/:mesh/units", async (c) => {
  const mesh = meshName(c);
  can(c, "submit");
  // A chunked body cut short can arrive looking complete (wrangler dev forwards it so); only a
  // declared length lets the broker tell, and a unit must never run on a truncated stdin.
  if (!/^\d{1,15}$/.test(c.req.header("content-length") ?? "")) {
    throw new MeshError("length_required", "send the payload with a Content-Length header (meshctl does; with curl use --data-binary @FILE)");
  }
  const worktype = c.req.query("worktype") ?? "";
  if (!NAME_PATTERN.test(worktype)) throw new MeshError("bad_request", "give the work type: ?worktype=NAME");
  const targetNode = c.req.query("node") || null;
  if (targetNode !== null && !NAME_PATTERN.test(targetNode)) throw new MeshError("bad_request", "invalid node id");
  const params: Record<string, string> = {};
  for (const [key, value] of new URL(c.req.url).searchParams) {
    if (key.startsWith("param.") && key.length > 6) params[key.slice(6)] = value;
  }
  const ttl = c.req.query("ttl");
  const ttlMs = ttl === undefined ? null : unwrap(parseDuration(ttl));
  const lostAfter = c.req.query("lostAfter");
  const lostAfterMs = lostAfter === undefined ? null : unwrap(parseDuration(lostAfter));
  const chosenId = c.req.query("id") ?? null;
  if (chosenId !== null && !UNIT_ID_PATTERN.test(chosenId)) throw new MeshError("bad_unit_id", "unit ids are 8 characters of [0-9a-zA-Z]");
  const origin = c.req.query("origin") || null;
  if (origin !== null && !NAME_PATTERN.test(origin)) throw new MeshError("bad_request", "origin names are 1-64 characters of [A-Za-z0-9._-]");
  const signature = c.req.header("mesh-signature") ?? null;
  if (signature !== null && (signature.length > MAX_SIGNATURE_CHARS || !/^[A-Za-z0-9_.-]+$/.test(signature))) {
    throw new MeshError("bad_request", `the Mesh-Signature header must be at most ${MAX_SIGNATURE_CHARS} characters of base64url and dots`);
  }
  const created = asResult<{ unit: UnitIndexRow; created: boolean }>(
    await meshStub(c, mesh).createUnit({
      mesh,
      worktype,
      targetNode,
      idempotencyKey: c.req.header("idempotency-key") ?? null,
      unitId: chosenId,
      submitter: submitterOf(c.get("principal")),
      params,
      ttlMs,
      lostAfterMs,
      signature,
      origin,
      payloadLength: Number(c.req.header("content-length")),
    }),
  );
  const unit = unitStub(c, mesh, created.unit.id);
  // A retry of a submit whose payload is in: answer here, leaving the body unread. Forwarded to the
  // Unit object and left unread there, the runtime would break the client's connection.
  if (!created.created && created.unit.ready) return c.json(asResult<UnitRecord>(await unit.status()), 200);
  const retry = created.created ? "" : "?retry=1";
  return forward(await unit.fetch(new Request(`https://unit/payload${retry}`, { method: "POST", body: c.req.raw.body, headers: c.req.raw.headers })));
});

app.get("/v1/meshes/:mesh/units", async (c) => {
  const mesh = meshName(c);
  can(c, "read");
  const origin = c.req.query("origin") ?? null;
  if (origin !== null && !NAME_PATTERN.test(origin)) throw new MeshError("bad_request", "origin names are 1-64 characters of [A-Za-z0-9._-]");
  const units = await meshStub(c, mesh).listUnits(origin);
  if (c.req.query("records") !== "1") return c.json(units);
  // Whole status records in one answer (the control-service bridge's `work list`): one RPC per
  // unit here instead of one request per unit from the client. Tombstones are left out.
  const live = units.filter((u: UnitSummary) => u.state !== "Released");
  if (live.length > MAX_LISTED_RECORDS) {
    throw new MeshError(
      "limit_exceeded",
      `${live.length} units match; records=1 lists at most ${MAX_LISTED_RECORDS} (release finished units, or narrow with ?origin=)`,
    );
  }
  const records: UnitRecord[] = [];
  for (let i = 0; i < live.length; i += RECORD_BATCH) {
    const batch = await Promise.all(live.slice(i, i + RECORD_BATCH).map((u: UnitSummary) => unitStub(c, mesh, u.id).status()));
    for (const result of batch) if (result.ok && result.value.state !== "Released") records.push(result.value);
  }
  return c.json(records);
});

app.get("/v1/meshes/:mesh/units/:id", async (c) => {
  const mesh = meshName(c);
  can(c, "read");
  return c.json(asResult(await unitStub(c, mesh, unitId(c)).status()));
});

/**
 * Raw results, byte for byte as the command wrote them: what meshctl, the receptor bridge and
 * `ansible-runner process` read. Not for read tokens: masking would change the bytes and their
 * offsets, which resumes and `ansible-runner process` depend on, and it could only mask what it
 * recognises (ansible-runner's `starting` environment). Readers get events and artifacts, masked.
 */
app.get("/v1/meshes/:mesh/units/:id/results", async (c) => {
  const mesh = meshName(c);
  const id = unitId(c);
  can(c, "results");
  const raw = c.req.query("offset") ?? "0";
  if (!/^\d{1,15}$/.test(raw)) throw new MeshError("bad_offset", "offset must be a non-negative integer");
  const follow = c.req.query("follow") === "1" || c.req.query("follow") === "true";
  const url = `https://unit/results?offset=${raw}&follow=${follow ? 1 : 0}`;
  const response = await unitStub(c, mesh, id).fetch(url);
  return follow ? whileAuthorized(c, response) : forward(response);
});

app.get("/v1/meshes/:mesh/units/:id/data", async (c) => {
  const mesh = meshName(c);
  const id = unitId(c);
  requireUpgrade(c);
  // Only the node itself (by its credential) may fetch a unit's payload; an admin may act for it.
  const principal = c.get("principal");
  const claimed = c.req.query("node") ?? "";
  let node = claimed;
  if (principal.kind === "node") {
    if (claimed !== "" && claimed !== principal.nodeId) throw new MeshError("forbidden", `this credential belongs to node ${principal.nodeId}, not ${claimed}`);
    node = principal.nodeId;
  } else {
    authorize(principal, "manage");
  }
  const opener = encodeURIComponent(openerTag(principal));
  return unitStub(c, mesh, id).fetch(new Request(`https://unit/data?node=${encodeURIComponent(node)}&opener=${opener}`, c.req.raw));
});

/**
 * What an event feed request passes on to its object: `after` and `limit` (checked here) and the
 * headers that choose SSE and resume it. `latest`: the mesh feed also takes `after=latest`.
 */
function feedRequest(c: Ctx, base: string, latest: boolean): { url: URL; headers: Headers } {
  const url = new URL(base);
  for (const key of ["after", "limit"] as const) {
    const value = c.req.query(key);
    if (value === undefined) continue;
    const word = latest && key === "after" && value === "latest";
    if (!word && !/^\d{1,15}$/.test(value))
      throw new MeshError("bad_request", `${key} must be a non-negative integer${latest && key === "after" ? " or latest" : ""}`);
    url.searchParams.set(key, value);
  }
  const headers = new Headers();
  for (const name of ["accept", "last-event-id"]) {
    const value = c.req.header(name);
    if (value !== undefined) headers.set(name, value);
  }
  return { url, headers };
}

/**
 * The unit's events (SSE with `Accept: text/event-stream`, else JSON pages). Readers that may not
 * submit get ansible-runner's `starting` environment masked: a submitter can run commands on the
 * nodes anyway, a read token is for watching.
 */
app.get("/v1/meshes/:mesh/units/:id/events", async (c) => {
  const mesh = meshName(c);
  const id = unitId(c);
  can(c, "read");
  const { url, headers } = feedRequest(c, "https://unit/events", false);
  url.searchParams.set("redact", may(c.get("principal"), "submit") ? "0" : "1");
  return whileAuthorized(c, await unitStub(c, mesh, id).fetch(url, { headers }));
});

/**
 * The unit's artifacts as a tar, as `ansible-runner process` would write them (unit/artifacts.ts).
 * As with events, readers that may not submit get the environment in `command` masked.
 */
app.get("/v1/meshes/:mesh/units/:id/artifacts", async (c) => {
  const mesh = meshName(c);
  const id = unitId(c);
  can(c, "read");
  const redact = may(c.get("principal"), "submit") ? "0" : "1";
  return forward(await unitStub(c, mesh, id).fetch(`https://unit/artifacts?redact=${redact}`));
});

/** Mesh-wide events for dashboards: unit state changes, node joins and leaves. */
app.get("/v1/meshes/:mesh/events", async (c) => {
  const mesh = meshName(c);
  can(c, "read");
  const { url, headers } = feedRequest(c, "https://mesh/events", true);
  return whileAuthorized(c, await meshStub(c, mesh).fetch(url, { headers }));
});

/** Who the caller is and what it may do, so a dashboard offers only what will work. */
app.get("/v1/meshes/:mesh/whoami", (c) => {
  meshName(c);
  const principal = c.get("principal");
  return c.json({
    kind: principal.kind,
    role: principal.kind === "token" ? principal.role : null,
    tokenId: principal.kind === "token" ? principal.tokenId : null,
    nodeId: principal.kind === "node" ? principal.nodeId : null,
    may: { read: may(principal, "read"), results: may(principal, "results"), submit: may(principal, "submit"), manage: may(principal, "manage") },
  });
});

app.post("/v1/meshes/:mesh/units/:id/cancel", async (c) => {
  const mesh = meshName(c);
  can(c, "submit");
  return c.json(asResult(await unitStub(c, mesh, unitId(c)).cancel()));
});

app.delete("/v1/meshes/:mesh/units/:id", async (c) => {
  const mesh = meshName(c);
  can(c, "submit");
  return c.json(asResult(await unitStub(c, mesh, unitId(c)).release()));
});

app.get("/v1/meshes/:mesh/status", async (c) => {
  const mesh = meshName(c);
  can(c, "read");
  return c.json(await meshStub(c, mesh).status(mesh));
});

const accessStub = (c: Ctx, mesh: string) => c.env.ACCESS.get(c.env.ACCESS.idFromName(mesh));

app.post("/v1/meshes/:mesh/tokens", async (c) => {
  const mesh = meshName(c);
  can(c, "manage");
  let body: unknown;
  try {
    body = await c.req.json();
  } catch {
    throw new MeshError("bad_request", 'send JSON: {"role": "admin|submit|read|agent", "name": "…"}');
  }
  const { role, name } = (body ?? {}) as { role?: unknown; name?: unknown };
  if (!isRole(role)) throw new MeshError("bad_request", "role must be one of admin, submit, read, agent");
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are exactly what a name may not hold.
  if (name !== undefined && (typeof name !== "string" || name.length > 100 || /[\x00-\x1f]/.test(name))) {
    throw new MeshError("bad_request", "name must be a string of at most 100 printable characters");
  }
  return c.json(asResult<TokenInfo & { token: string }>(await accessStub(c, mesh).createToken(role, (name as string | undefined) ?? role)), 201);
});

app.get("/v1/meshes/:mesh/tokens", async (c) => {
  const mesh = meshName(c);
  can(c, "manage");
  return c.json(await accessStub(c, mesh).listTokens());
});

app.delete("/v1/meshes/:mesh/tokens/:token", async (c) => {
  const mesh = meshName(c);
  can(c, "manage");
  const id = c.req.param("token");
  if (!UNIT_ID_PATTERN.test(id)) throw new MeshError("bad_request", "token ids are 8 characters of [0-9a-zA-Z]");
  const revoked = asResult<TokenInfo>(await accessStub(c, mesh).revokeToken(id));
  // Its SSE streams and follows end by themselves (whileAuthorized); its agent sockets are closed here.
  await meshStub(c, mesh).closeOpenedBy(`by:token:${id}`);
  return c.json(revoked);
});

/** Revokes a node's credential, disconnects it, fails its active units and forgets it. */
app.delete("/v1/meshes/:mesh/nodes/:node", async (c) => {
  const mesh = meshName(c);
  can(c, "manage");
  const node = c.req.param("node");
  if (!NAME_PATTERN.test(node)) throw new MeshError("bad_request", "node ids are 1-64 characters of [A-Za-z0-9._-]");
  const revoked = await accessStub(c, mesh).revokeCredential(node);
  // Before removeNode fails its units: data sockets are looked for at the units still active.
  await meshStub(c, mesh).closeOpenedBy(`by:node:${node}`);
  const removed = await meshStub(c, mesh).removeNode(node);
  if (!revoked && !removed) throw new MeshError("unknown_node", `no node ${node} in mesh ${mesh}`);
  return c.json({ node, revoked, removed });
});
