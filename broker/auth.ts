/**
 * Who is calling. The bootstrap admin token (a Worker secret) is compared by SHA-256 digest in
 * constant time; every other secret is looked up by its digest in the mesh's Access object, so a
 * token of one mesh means nothing to another. `authorize` applies the role table in shared/roles.ts.
 */
import { MeshError } from "../shared/errors.js";
import { type Permission, type Principal, SECRET_PATTERN, roleAllows } from "../shared/roles.js";
import { secretDigest } from "./access/secrets.js";
import { accessObject } from "./stubs.js";

export function bearerToken(header: string | undefined): string | null {
  const match = /^Bearer\s+(\S+)$/i.exec(header ?? "");
  return match?.[1] ?? null;
}

async function digestBytes(text: string): Promise<ArrayBuffer> {
  return crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
}

async function isBootstrapToken(presented: string, expected: string | undefined): Promise<boolean> {
  if (!expected) return false;
  const [a, b] = await Promise.all([digestBytes(presented), digestBytes(expected)]);
  return crypto.subtle.timingSafeEqual(a, b);
}

export async function authenticate(header: string | undefined, env: Env, mesh: string): Promise<Principal> {
  const presented = bearerToken(header);
  if (!presented) throw new MeshError("unauthorized", "missing bearer token: send `Authorization: Bearer <token>`");
  if (await isBootstrapToken(presented, env.ADMIN_TOKEN))
    return { kind: "token", tokenId: "bootstrap", role: "admin", mesh: null };
  if (SECRET_PATTERN.test(presented)) {
    const principal = await accessObject(env, mesh).authenticate(mesh, await secretDigest(presented));
    if (principal) return principal;
  }
  throw new MeshError("unauthorized", "invalid or revoked token");
}

/** Throws 403 unless the principal holds `permission`. Node credentials hold none of the roles' permissions. */
export function authorize(principal: Principal, permission: Permission): void {
  if (principal.kind === "node") {
    throw new MeshError("forbidden", `a node credential (node ${principal.nodeId}) may only connect as its own node`);
  }
  if (!roleAllows(principal.role, permission)) {
    const what =
      permission === "results"
        ? "read raw results (they carry the job's environment unmasked); read the unit's events or artifacts"
        : permission;
    throw new MeshError("forbidden", `${article(principal.role)} ${principal.role} token may not ${what}`);
  }
}

/** Whether the principal holds `permission`, without throwing (what a UI may offer). */
export function may(principal: Principal, permission: Permission): boolean {
  return principal.kind === "token" && roleAllows(principal.role, permission);
}

/** The agent sockets: a node credential acts only as its own node; a join token (agent/admin) may join. */
export function authorizeNode(principal: Principal, nodeId: string): { joining: boolean } {
  if (principal.kind === "node") {
    if (principal.nodeId !== nodeId)
      throw new MeshError("forbidden", `this credential belongs to node ${principal.nodeId}, not ${nodeId}`);
    return { joining: false };
  }
  if (!roleAllows(principal.role, "join"))
    throw new MeshError("forbidden", `${article(principal.role)} ${principal.role} token may not join`);
  return { joining: true };
}

/** "an agent token", "an admin token", "a read token". */
const article = (role: string) => (/^[aeiou]/.test(role) ? "an" : "a");
