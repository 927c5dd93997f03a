/**
 * The agent's two sockets: the control socket to its mesh's Mesh object, and a data socket per
 * unit to that unit's Unit object. The Worker checks the credential and the node id, then passes
 * the upgrade on with a grant the object trusts (stubs.ts); after the 101 it is out of the path.
 */
import { MeshError } from "../../shared/errors.js";
import { NAME_PATTERN } from "../../shared/ids.js";
import { authorize, authorizeNode } from "../auth.js";
import { meshObject, unitObject, upgradeRequest } from "../stubs.js";
import { type App, meshName, openerTag, requireUpgrade, unitId } from "./context.js";

export function agentRoutes(app: App): void {
  app.get("/v1/meshes/:mesh/connect", async (c) => {
    const mesh = meshName(c);
    requireUpgrade(c);
    const node = c.req.query("node") ?? "";
    if (!NAME_PATTERN.test(node)) throw new MeshError("bad_request", "node ids are 1-64 characters of [A-Za-z0-9._-]");
    const principal = c.get("principal");
    const { joining } = authorizeNode(principal, node);
    return meshObject(c.env, mesh).fetch(upgradeRequest({ node, joining, opener: openerTag(principal) }));
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
      if (claimed !== "" && claimed !== principal.nodeId)
        throw new MeshError("forbidden", `this credential belongs to node ${principal.nodeId}, not ${claimed}`);
      node = principal.nodeId;
    } else {
      authorize(principal, "manage");
    }
    return unitObject(c.env, mesh, id).fetch(upgradeRequest({ node, joining: false, opener: openerTag(principal) }));
  });
}
