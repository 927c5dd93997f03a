/**
 * The broker's HTTP API. Routes (routes/, one file per resource) validate and authenticate, then
 * hand off to the mesh's Mesh object (membership, routing, the unit index) or to one unit's Unit
 * object (payload, results, status), reached through stubs.ts.
 */
import { Hono } from "hono";
import { MeshError } from "../shared/errors.js";
import { authenticate } from "./auth.js";
import { misconfiguredBroker } from "../shared/broker-config.js";
import { logError } from "./log.js";
import { agentRoutes } from "./routes/agents.js";
import { type AppEnv, meshName } from "./routes/context.js";
import { meshRoutes } from "./routes/mesh.js";
import { nodeRoutes } from "./routes/nodes.js";
import { tokenRoutes } from "./routes/tokens.js";
import { unitDataRoutes } from "./routes/unit-data.js";
import { unitRoutes } from "./routes/units.js";

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

app.get("/healthz", (c) => {
  // A load balancer's health check sees a broker that refuses every request as unhealthy.
  const misconfigured = misconfiguredBroker(c.env);
  if (misconfigured !== null) throw new MeshError("misconfigured", misconfigured);
  return c.json({ ok: true });
});

app.use("/v1/meshes/:mesh/*", async (c, next) => {
  const misconfigured = misconfiguredBroker(c.env);
  if (misconfigured !== null) throw new MeshError("misconfigured", misconfigured);
  c.set("principal", await authenticate(c.req.header("authorization"), c.env, meshName(c)));
  await next();
});

agentRoutes(app);
unitRoutes(app);
unitDataRoutes(app);
meshRoutes(app);
tokenRoutes(app);
nodeRoutes(app);
