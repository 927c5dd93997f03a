/**
 * The Access object's SQLite tables: a mesh's tokens and its nodes' credentials, stored only as
 * SHA-256 digests of the secrets. Lookups go by digest: the secrets are 256-bit random, so the
 * digest is a safe key and nothing secret is ever compared byte by byte.
 */
import type { Role } from "../../shared/roles.js";

export interface TokenRow {
  id: string;
  name: string;
  role: Role;
  createdAt: number;
  revokedAt: number | null;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS tokens (
  id TEXT PRIMARY KEY, name TEXT NOT NULL, role TEXT NOT NULL, digest TEXT NOT NULL UNIQUE,
  created_at INTEGER NOT NULL, revoked_at INTEGER);
CREATE TABLE IF NOT EXISTS node_credentials (
  node_id TEXT PRIMARY KEY, digest TEXT NOT NULL UNIQUE, created_at INTEGER NOT NULL, used_at INTEGER);
`;

const TOKEN_COLUMNS = "id, name, role, created_at AS createdAt, revoked_at AS revokedAt";

export class AccessStore {
  constructor(private readonly sql: SqlStorage) {
    sql.exec(SCHEMA);
  }

  tokenByDigest(digest: string): TokenRow | null {
    return (
      (this.sql.exec(`SELECT ${TOKEN_COLUMNS} FROM tokens WHERE digest = ?`, digest).toArray()[0] as
        | TokenRow
        | undefined) ?? null
    );
  }

  insertToken(row: Omit<TokenRow, "revokedAt">, digest: string): void {
    this.sql.exec(
      "INSERT INTO tokens (id, name, role, digest, created_at) VALUES (?, ?, ?, ?, ?)",
      row.id,
      row.name,
      row.role,
      digest,
      row.createdAt,
    );
  }

  tokens(): TokenRow[] {
    return this.sql
      .exec(`SELECT ${TOKEN_COLUMNS} FROM tokens ORDER BY created_at, id`)
      .toArray() as unknown as TokenRow[];
  }

  token(id: string): TokenRow | null {
    return (
      (this.sql.exec(`SELECT ${TOKEN_COLUMNS} FROM tokens WHERE id = ?`, id).toArray()[0] as TokenRow | undefined) ??
      null
    );
  }

  revokeToken(id: string, now: number): void {
    this.sql.exec("UPDATE tokens SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?", now, id);
  }

  countTokens(): number {
    return this.sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM tokens").one().n;
  }

  /** The node a credential belongs to; its first use is recorded (see usedCredential). */
  nodeByDigest(digest: string, now: number): string | null {
    const node =
      this.sql.exec<{ node_id: string }>("SELECT node_id FROM node_credentials WHERE digest = ?", digest).toArray()[0]
        ?.node_id ?? null;
    if (node !== null)
      this.sql.exec("UPDATE node_credentials SET used_at = ? WHERE node_id = ? AND used_at IS NULL", now, node);
    return node;
  }

  /** Whether the node has a credential that an agent has connected with at least once. */
  usedCredential(nodeId: string): boolean {
    return (
      this.sql.exec("SELECT 1 FROM node_credentials WHERE node_id = ? AND used_at IS NOT NULL", nodeId).toArray()
        .length > 0
    );
  }

  /** Sets the node's credential, replacing one that was never used. */
  putCredential(nodeId: string, digest: string, now: number): void {
    this.sql.exec(
      `INSERT INTO node_credentials (node_id, digest, created_at) VALUES (?, ?, ?)
       ON CONFLICT (node_id) DO UPDATE SET digest = excluded.digest, created_at = excluded.created_at, used_at = NULL`,
      nodeId,
      digest,
      now,
    );
  }

  deleteCredential(nodeId: string): boolean {
    return (
      this.sql.exec("DELETE FROM node_credentials WHERE node_id = ? RETURNING node_id", nodeId).toArray().length > 0
    );
  }
}
