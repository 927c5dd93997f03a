/**
 * Which Durable Object holds what, and the one place that names them: a Mesh and an Access object
 * per mesh id, a Unit object per unit of a mesh. The Worker and the objects reach each other only
 * through these functions, and call typed RPC methods on what they return.
 *
 * `fetch` on an object is left for WebSocket upgrades, which the runtime passes only through
 * fetch. What the object must trust about such a socket (whose node it is, who opened it) rides
 * in a grant header of a Request the Worker builds afresh: the client's URL and headers never
 * reach the object, and an object is reachable only through its namespace binding.
 */

export const meshObject = (env: Env, mesh: string) => env.MESH.get(env.MESH.idFromName(mesh));

export const accessObject = (env: Env, mesh: string) => env.ACCESS.get(env.ACCESS.idFromName(mesh));

export const unitObject = (env: Env, mesh: string, unit: string) =>
  env.UNIT.get(env.UNIT.idFromName(`${mesh}/${unit}`));

export type MeshStub = ReturnType<typeof meshObject>;
export type UnitStub = ReturnType<typeof unitObject>;
export type AccessStub = ReturnType<typeof accessObject>;

/** What the Worker vouches for when it passes an agent's socket upgrade on to an object. */
export interface SocketGrant {
  node: string;
  /** The tag of the credential that opened it (`by:token:ID`, `by:node:ID`), so revoking it closes the socket. */
  opener: string;
  /** Opened with a join token: the hello issues the node's credential. */
  joining: boolean;
}

const GRANT_HEADER = "mesh-socket-grant";

/** The upgrade request the Worker sends an object: nothing of the client's request but the upgrade. */
export function upgradeRequest(grant: SocketGrant): Request {
  return new Request("https://object/socket", {
    headers: { upgrade: "websocket", [GRANT_HEADER]: JSON.stringify(grant) },
  });
}

/** The grant of an upgrade request from the Worker; null if it carries none (a programming error). */
export function socketGrant(request: Request): SocketGrant | null {
  if (request.headers.get("upgrade")?.toLowerCase() !== "websocket") return null;
  try {
    const value: unknown = JSON.parse(request.headers.get(GRANT_HEADER) ?? "");
    if (typeof value !== "object" || value === null) return null;
    const { node, opener, joining } = value as Record<string, unknown>;
    if (typeof node !== "string" || typeof opener !== "string" || typeof joining !== "boolean") return null;
    return { node, opener, joining };
  } catch {
    return null;
  }
}
