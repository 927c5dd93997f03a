/**
 * The node's credential: issued by the broker the first time the agent joins with a join token,
 * then kept in the work dir (mode 0600) and used instead of the join token from then on. It is
 * bound to the broker, mesh and node id it was issued for; with any of them changed it is ignored.
 */
import { mkdir, open, readFile, rename } from "node:fs/promises";
import { join } from "node:path";
import { z } from "zod";

export interface CredentialScope {
  broker: string;
  mesh: string;
  nodeId: string;
}

const Stored = z.object({
  broker: z.string(),
  mesh: z.string(),
  nodeId: z.string(),
  credential: z.string().regex(/^mnc_[A-Za-z0-9_-]{43}$/),
});

export function credentialPath(workDir: string): string {
  return join(workDir, "credential.json");
}

async function readStored(workDir: string): Promise<z.infer<typeof Stored> | null> {
  try {
    const stored = Stored.safeParse(JSON.parse(await readFile(credentialPath(workDir), "utf8")));
    return stored.success ? stored.data : null;
  } catch {
    return null;
  }
}

export async function loadCredential(workDir: string, scope: CredentialScope): Promise<string | null> {
  const stored = await readStored(workDir);
  if (!stored) return null;
  const { broker, mesh, nodeId, credential } = stored;
  return broker === scope.broker && mesh === scope.mesh && nodeId === scope.nodeId ? credential : null;
}

/**
 * The broker URL a stored credential of this mesh and node is bound to, when it is not
 * `scope.broker`: the broker moved (another port, another name), so the join is refused as taken.
 */
export async function credentialBrokerElsewhere(workDir: string, scope: CredentialScope): Promise<string | null> {
  const stored = await readStored(workDir);
  return stored && stored.mesh === scope.mesh && stored.nodeId === scope.nodeId && stored.broker !== scope.broker
    ? stored.broker
    : null;
}

/** Written whole or not at all, readable by this user only, and on disk before it is relied on. */
export async function saveCredential(workDir: string, scope: CredentialScope, credential: string): Promise<void> {
  await mkdir(workDir, { recursive: true, mode: 0o700 });
  const path = credentialPath(workDir);
  const file = await open(`${path}.tmp`, "w", 0o600);
  try {
    await file.writeFile(`${JSON.stringify({ ...scope, credential })}\n`);
    await file.sync();
  } finally {
    await file.close();
  }
  await rename(`${path}.tmp`, path);
}

/**
 * Binds a stored credential of `node` to `broker` instead of the URL it was issued at; returns that
 * URL, or null when there was nothing to move. Only for a caller that knows both URLs reach the same
 * broker (npm start: the same state dir, another port); otherwise the join must be refused.
 */
export async function rebindCredential(workDir: string, scope: CredentialScope): Promise<string | null> {
  const stored = await readStored(workDir);
  if (!stored || stored.mesh !== scope.mesh || stored.nodeId !== scope.nodeId || stored.broker === scope.broker)
    return null;
  await saveCredential(workDir, scope, stored.credential);
  return stored.broker;
}
