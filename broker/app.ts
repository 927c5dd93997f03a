/**
 * The broker's HTTP API. Routes validate and authenticate, then hand off to the mesh's Mesh object
 * (membership, routing, the unit index) or to one unit's Unit object (payload, results, status).
 */
import { type Context, Hono } from "hono";
import { parseDuration } from "../shared/duration.js";
import { MeshError, type Result, unwrap } from "../shared/errors.js";
import { NAME_PATTERN, UNIT_ID_PATTERN } from "../shared/ids.js";
import { requireToken } from "./auth.js";
import { logError } from "./log.js";
import type { UnitIndexRow } from "./mesh/store.js";

type AppEnv = { Bindings: Env };
type Ctx = Context<AppEnv>;

export const app = new Hono<AppEnv>();

app.onError((error, c) => {
  if (error instanceof MeshError) return c.json(error.toBody(), error.status as 400);
  logError("http:unhandled", error, { path: c.req.path });
  return c.json(new MeshError("internal", "internal error").toBody(), 500);
});

app.notFound((c) => c.json(new MeshError("unknown_route", `no route for ${c.req.method} ${c.req.path}`).toBody(), 404));

app.get("/healthz", (c) => c.json({ ok: true }));

app.use("/v1/*", async (c, next) => {
  await requireToken(c.req.header("authorization"), c.env.ADMIN_TOKEN);
  await next();
});

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
  const url = new URL(c.req.url);
  url.searchParams.set("mesh", mesh);
  return meshStub(c, mesh).fetch(new Request(url, c.req.raw));
});

app.post("/v1/meshes/:mesh/units", async (c) => {
  const mesh = meshName(c);
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
  const created = asResult<{ unit: UnitIndexRow; created: boolean }>(
    await meshStub(c, mesh).createUnit({
      mesh,
      worktype,
      targetNode,
      idempotencyKey: c.req.header("idempotency-key") ?? null,
    }),
  );
  const unit = unitStub(c, mesh, created.unit.id);
  // init is idempotent: a retry also repairs a unit whose first POST died between the two calls.
  await unit.init({ mesh, id: created.unit.id, worktype, targetNode, params, ttlMs });
  const retry = created.created ? "" : "?retry=1";
  return forward(await unit.fetch(new Request(`https://unit/payload${retry}`, { method: "POST", body: c.req.raw.body, headers: c.req.raw.headers })));
});

app.get("/v1/meshes/:mesh/units", async (c) => c.json(await meshStub(c, meshName(c)).listUnits()));

app.get("/v1/meshes/:mesh/units/:id", async (c) => {
  const mesh = meshName(c);
  return c.json(asResult(await unitStub(c, mesh, unitId(c)).status()));
});

app.get("/v1/meshes/:mesh/units/:id/results", async (c) => {
  const mesh = meshName(c);
  const id = unitId(c);
  const raw = c.req.query("offset") ?? "0";
  if (!/^\d{1,15}$/.test(raw)) throw new MeshError("bad_offset", "offset must be a non-negative integer");
  const follow = c.req.query("follow") === "1" || c.req.query("follow") === "true";
  const url = `https://unit/results?offset=${raw}&follow=${follow ? 1 : 0}`;
  return forward(await unitStub(c, mesh, id).fetch(url));
});

app.get("/v1/meshes/:mesh/units/:id/data", async (c) => {
  const mesh = meshName(c);
  const id = unitId(c);
  requireUpgrade(c);
  return unitStub(c, mesh, id).fetch(new Request(`https://unit/data?node=${encodeURIComponent(c.req.query("node") ?? "")}`, c.req.raw));
});

app.post("/v1/meshes/:mesh/units/:id/cancel", async (c) => {
  const mesh = meshName(c);
  return c.json(asResult(await unitStub(c, mesh, unitId(c)).cancel()));
});

app.delete("/v1/meshes/:mesh/units/:id", async (c) => {
  const mesh = meshName(c);
  return c.json(asResult(await unitStub(c, mesh, unitId(c)).release()));
});

app.get("/v1/meshes/:mesh/status", async (c) => {
  const mesh = meshName(c);
  return c.json(await meshStub(c, mesh).status(mesh));
});
