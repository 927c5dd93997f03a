/**
 * Bearer-token check. The token is compared by SHA-256 digest with a constant-time comparison so
 * neither its length nor its prefix leaks through timing.
 */
import { MeshError } from "../shared/errors.js";

async function digest(text: string): Promise<ArrayBuffer> {
  return crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
}

export function bearerToken(header: string | undefined): string | null {
  const match = /^Bearer\s+(\S+)$/i.exec(header ?? "");
  return match?.[1] ?? null;
}

export async function requireToken(header: string | undefined, expected: string | undefined): Promise<void> {
  if (!expected) throw new MeshError("unauthorized", "the broker has no ADMIN_TOKEN configured; set it with `wrangler secret put ADMIN_TOKEN`");
  const presented = bearerToken(header);
  if (!presented) throw new MeshError("unauthorized", "missing bearer token: send `Authorization: Bearer <token>`");
  const [a, b] = await Promise.all([digest(presented), digest(expected)]);
  if (!crypto.subtle.timingSafeEqual(a, b)) throw new MeshError("unauthorized", "invalid token");
}
