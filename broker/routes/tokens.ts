/** The mesh's tokens (admin only): create, list, revoke. */
import { MeshError } from "../../shared/errors.js";
import { UNIT_ID_PATTERN } from "../../shared/ids.js";
import { isRole } from "../../shared/roles.js";
import type { TokenInfo } from "../../shared/api.js";
import { accessObject, meshObject } from "../stubs.js";
import { type App, asResult, can, meshName } from "./context.js";

export function tokenRoutes(app: App): void {
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
    return c.json(
      asResult<TokenInfo & { token: string }>(
        await accessObject(c.env, mesh).createToken(role, (name as string | undefined) ?? role),
      ),
      201,
    );
  });

  app.get("/v1/meshes/:mesh/tokens", async (c) => {
    const mesh = meshName(c);
    can(c, "manage");
    return c.json(await accessObject(c.env, mesh).listTokens());
  });

  app.delete("/v1/meshes/:mesh/tokens/:token", async (c) => {
    const mesh = meshName(c);
    can(c, "manage");
    const id = c.req.param("token");
    if (!UNIT_ID_PATTERN.test(id)) throw new MeshError("bad_request", "token ids are 8 characters of [0-9a-zA-Z]");
    const revoked = asResult<TokenInfo>(await accessObject(c.env, mesh).revokeToken(id));
    // Its SSE streams and follows end by themselves (whileAuthorized); its agent sockets are closed here.
    await meshObject(c.env, mesh).closeOpenedBy(`by:token:${id}`);
    return c.json(revoked);
  });
}
