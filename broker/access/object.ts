/**
 * The Access Durable Object: one per mesh. It holds the mesh's tokens and its nodes' credentials
 * and answers "who is this?" for every request to the mesh. Kept apart from the Mesh object so
 * that authentication, which every request needs, never queues behind routing work.
 */
import { DurableObject } from "cloudflare:workers";
import { type Result, fail, ok } from "../../shared/errors.js";
import { newUnitId } from "../../shared/ids.js";
import type { TokenInfo } from "../../shared/api.js";
import type { Principal, Role } from "../../shared/roles.js";
import { type Guarded, guard } from "../guard.js";
import { log } from "../log.js";
import { newSecret, secretDigest } from "./secrets.js";
import { AccessStore, type TokenRow } from "./store.js";

const MAX_TOKENS = 1000;

function info(row: TokenRow): TokenInfo {
  return {
    id: row.id,
    name: row.name,
    role: row.role,
    createdAt: new Date(row.createdAt).toISOString(),
    revokedAt: row.revokedAt === null ? null : new Date(row.revokedAt).toISOString(),
  };
}

export class AccessObject extends DurableObject<Env> {
  private readonly store: AccessStore;
  private readonly guarded: Guarded;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.store = new AccessStore(ctx.storage.sql);
    this.guarded = guard("access", () => ctx.id.name);
  }

  authenticate(mesh: string, digest: string): Promise<Principal | null> {
    return this.guarded("authenticate", () => {
      const token = this.store.tokenByDigest(digest);
      if (token) return token.revokedAt === null ? { kind: "token", tokenId: token.id, role: token.role, mesh } : null;
      const nodeId = this.store.nodeByDigest(digest, Date.now());
      return nodeId === null ? null : { kind: "node", nodeId, mesh };
    });
  }

  createToken(role: Role, name: string): Promise<Result<TokenInfo & { token: string }>> {
    return this.guarded("createToken", async () => {
      if (this.store.countTokens() >= MAX_TOKENS)
        return fail("limit_exceeded", `a mesh holds at most ${MAX_TOKENS} tokens; revoke and remove old ones`);
      const secret = newSecret("token");
      const digest = await secretDigest(secret);
      let id = newUnitId();
      while (this.store.token(id)) id = newUnitId();
      const row = { id, name, role, createdAt: Date.now() };
      this.store.insertToken(row, digest);
      log("token:created", { id, role, name });
      return ok({ ...info({ ...row, revokedAt: null }), token: secret });
    });
  }

  listTokens(): Promise<TokenInfo[]> {
    return this.guarded("listTokens", () => this.store.tokens().map(info));
  }

  revokeToken(id: string): Promise<Result<TokenInfo>> {
    return this.guarded("revokeToken", () => {
      if (!this.store.token(id)) return fail("unknown_token", `no token ${id} in this mesh`);
      this.store.revokeToken(id, Date.now());
      log("token:revoked", { id });
      return ok(info(this.store.token(id)!));
    });
  }

  /**
   * Called when a node joins with a join token. A node id whose credential has been used is taken;
   * one issued but never used (the welcome carrying it was lost) is issued afresh.
   */
  issueCredential(nodeId: string): Promise<Result<string>> {
    return this.guarded("issueCredential", async () => {
      const secret = newSecret("node");
      const digest = await secretDigest(secret);
      // Check and insert with no await between them, so two agents joining at once cannot both win.
      if (this.store.usedCredential(nodeId)) {
        return fail(
          "node_taken",
          `node ${nodeId} has already joined this mesh; connect with its credential, or have an admin remove the node first`,
        );
      }
      this.store.putCredential(nodeId, digest, Date.now());
      log("node:credential-issued", { node: nodeId });
      return ok(secret);
    });
  }

  /** Whether a join for `nodeId` would be refused (its credential has been used): checked at the socket. */
  credentialInUse(nodeId: string): Promise<boolean> {
    return this.guarded("credentialInUse", () => this.store.usedCredential(nodeId));
  }

  revokeCredential(nodeId: string): Promise<boolean> {
    return this.guarded("revokeCredential", () => {
      const removed = this.store.deleteCredential(nodeId);
      if (removed) log("node:credential-revoked", { node: nodeId });
      return removed;
    });
  }
}
