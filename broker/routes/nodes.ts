/** A node's removal by an admin. */
import { MeshError } from "../../shared/errors.js";
import { NAME_PATTERN } from "../../shared/ids.js";
import { accessObject, meshObject } from "../stubs.js";
import { type App, can, meshName } from "./context.js";

export function nodeRoutes(app: App): void {
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
