/** Random secrets and their digests; the Worker and the Access object agree on both here. */
import { NODE_CREDENTIAL_PREFIX, TOKEN_PREFIX } from "../../shared/roles.js";

export function newSecret(kind: "token" | "node"): string {
  const bytes = crypto.getRandomValues(new Uint8Array(32));
  const text = btoa(String.fromCharCode(...bytes))
    .replace(/\+/g, "-")
    .replace(/\//g, "_")
    .replace(/=+$/, "");
  return `${kind === "token" ? TOKEN_PREFIX : NODE_CREDENTIAL_PREFIX}${text}`;
}

export async function secretDigest(secret: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(secret));
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}
