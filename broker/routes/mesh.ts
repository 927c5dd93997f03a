/** The mesh as a whole: its status, its event feed, and who the caller is in it. */
import { may } from "../auth.js";
import { CONTENT_TYPE as METRICS_CONTENT_TYPE } from "../metrics.js";
import { meshObject } from "../stubs.js";
import { type App, can, feedQuery, meshName } from "./context.js";
import { whileAuthorized } from "./follow.js";

export function meshRoutes(app: App): void {
  app.get("/v1/meshes/:mesh/status", async (c) => {
    const mesh = meshName(c);
    can(c, "read");
    return c.json(await meshObject(c.env, mesh).status());
  });

  /** The mesh's metrics for Prometheus (text format 0.0.4): queue, pickup and run times, nodes, capacity. */
  app.get("/v1/meshes/:mesh/metrics", async (c) => {
    const mesh = meshName(c);
    can(c, "read");
    return c.body(await meshObject(c.env, mesh).metricsText(), 200, { "content-type": METRICS_CONTENT_TYPE });
  });

  /** Mesh-wide events for dashboards: unit state changes, node joins and leaves. */
  app.get("/v1/meshes/:mesh/events", async (c) => {
    const mesh = meshName(c);
    can(c, "read");
    return whileAuthorized(c, await meshObject(c.env, mesh).events(feedQuery(c, { latest: true })));
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
      may: {
        read: may(principal, "read"),
        results: may(principal, "results"),
        submit: may(principal, "submit"),
        manage: may(principal, "manage"),
      },
    });
  });
}
