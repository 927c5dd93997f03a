/** What admins do to nodes: remove, pause and resume, health-check (docs/fleet.md). */
import { MeshError } from "../../shared/errors.js";
import type { HealthReport } from "../../shared/health.js";
import { NAME_PATTERN } from "../../shared/ids.js";
import { accessObject, meshObject } from "../stubs.js";
import { type App, type Ctx, asResult, can, meshName } from "./context.js";

function nodeName(c: Ctx): string {
  const node = c.req.param("node") ?? "";
  if (!NAME_PATTERN.test(node)) throw new MeshError("bad_request", "node ids are 1-64 characters of [A-Za-z0-9._-]");
  return node;
}

export function nodeRoutes(app: App): void {
  /** Pause or resume a node: paused, it finishes its units and takes no new ones. */
  for (const action of ["pause", "resume"] as const) {
    app.post(`/v1/meshes/:mesh/nodes/:node/${action}`, async (c) => {
      const mesh = meshName(c);
      can(c, "manage");
      return c.json(
        asResult<{ node: string; paused: boolean }>(
          await meshObject(c.env, mesh).pauseNode(nodeName(c), action === "pause"),
        ),
      );
    });
  }

  /** A health check through the node (shared/health.ts); a failed one holds the node until one passes. */
  app.post("/v1/meshes/:mesh/nodes/:node/check", async (c) => {
    const mesh = meshName(c);
    can(c, "manage");
    return c.json(asResult<HealthReport>(await meshObject(c.env, mesh).checkNode(nodeName(c))));
  });

  /** Revokes a node's credential, disconnects it, fails its active units and forgets it. */
  app.delete("/v1/meshes/:mesh/nodes/:node", async (c) => {
    const mesh = meshName(c);
    can(c, "manage");
    const node = c.req.param("node");
    if (!NAME_PATTERN.test(node)) throw new MeshError("bad_request", "node ids are 1-64 characters of [A-Za-z0-9._-]");
    const revoked = await accessObject(c.env, mesh).revokeCredential(node);
    // Before removeNode fails its units: data sockets are looked for at the units still active.
    await meshObject(c.env, mesh).closeOpenedBy(`by:node:${node}`);
    const removed = await meshObject(c.env, mesh).removeNode(node);
    if (!revoked && !removed) throw new MeshError("unknown_node", `no node ${node} in mesh ${mesh}`);
    return c.json({ node, revoked, removed });
  });
}
