/**
 * Who may do what. Tokens carry one role; a node credential (issued when an agent joins) is not a
 * role but a principal that may act only as its own node. This table is the whole policy.
 */
export const ROLES = ["admin", "submit", "read", "agent"] as const;
export type Role = (typeof ROLES)[number];

/**
 * manage: tokens and nodes; submit: create, cancel, release units; read: status, events, artifacts
 * (with the job's environment masked); results: raw results, which hold what the job printed,
 * environment and all, unmasked (a submitter could run a command that prints it anyway); join: agents.
 */
export type Permission = "manage" | "submit" | "read" | "results" | "join";

const GRANTS: Record<Role, readonly Permission[]> = {
  admin: ["manage", "submit", "read", "results", "join"],
  submit: ["submit", "read", "results"],
  read: ["read"],
  agent: ["join"],
};

export function roleAllows(role: Role, permission: Permission): boolean {
  return GRANTS[role].includes(permission);
}

export function isRole(value: unknown): value is Role {
  return typeof value === "string" && (ROLES as readonly string[]).includes(value);
}

/** What a request authenticated as. `mesh` is null only for the bootstrap admin token (all meshes). */
export type Principal =
  | { kind: "token"; tokenId: string; role: Role; mesh: string | null }
  | { kind: "node"; nodeId: string; mesh: string };

/** Token and credential shapes: a prefix says what a leaked string is; 32 random bytes say nothing else. */
export const TOKEN_PREFIX = "mtk_";
export const NODE_CREDENTIAL_PREFIX = "mnc_";
export const SECRET_PATTERN = /^(mtk|mnc)_[A-Za-z0-9_-]{43}$/;
