/** What every route shares: the app's types, the checked path parameters, and the small helpers over them. */
import type { Context, Hono } from "hono";
import { MeshError, type Result, unwrap } from "../../shared/errors.js";
import { NAME_PATTERN, UNIT_ID_PATTERN } from "../../shared/ids.js";
import type { Principal } from "../../shared/roles.js";
import { authorize } from "../auth.js";
import type { FeedQuery } from "../feed.js";

export type AppEnv = { Bindings: Env; Variables: { principal: Principal } };
export type Ctx = Context<AppEnv>;
export type App = Hono<AppEnv>;

export function meshName(c: Ctx): string {
  const mesh = c.req.param("mesh") ?? "";
  if (!NAME_PATTERN.test(mesh)) throw new MeshError("bad_request", "mesh ids are 1-64 characters of [A-Za-z0-9._-]");
  return mesh;
}

export function unitId(c: Ctx): string {
  const id = c.req.param("id") ?? "";
  if (!UNIT_ID_PATTERN.test(id)) throw new MeshError("bad_unit_id", "unit ids are 8 characters of [0-9a-zA-Z]");
  return id;
}

export const can = (c: Ctx, permission: Parameters<typeof authorize>[1]) => authorize(c.get("principal"), permission);

export function requireUpgrade(c: Ctx): void {
  if (c.req.header("upgrade")?.toLowerCase() !== "websocket") {
    throw new MeshError("bad_request", "this endpoint takes a WebSocket upgrade");
  }
}

/** Who opened an agent socket, as its object tags it, so revoking that credential can close it. */
export const openerTag = (principal: Principal) =>
  principal.kind === "token" ? `by:token:${principal.tokenId}` : `by:node:${principal.nodeId}`;

/**
 * RPC stubs wrap return types in the runtime's serialisation types, which defeats inference of
 * `Result<T>`; naming T at the call site restores it.
 */
export function asResult<T>(result: Result<T>): T {
  return unwrap(result);
}

/**
 * What an event feed request passes on to its object: `after` and `limit` (checked here) and the
 * headers that choose SSE and resume it. `latest`: the mesh feed also takes `after=latest`.
 */
export function feedQuery(c: Ctx, { latest }: { latest: boolean }): FeedQuery {
  for (const key of ["after", "limit"] as const) {
    const value = c.req.query(key);
    if (value === undefined) continue;
    const word = latest && key === "after" && value === "latest";
    if (!word && !/^\d{1,15}$/.test(value))
      throw new MeshError(
        "bad_request",
        `${key} must be a non-negative integer${latest && key === "after" ? " or latest" : ""}`,
      );
  }
  return {
    after: c.req.query("after") ?? null,
    limit: c.req.query("limit") ?? null,
    accept: c.req.header("accept") ?? null,
    lastEventId: c.req.header("last-event-id") ?? null,
  };
}
