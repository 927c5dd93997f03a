/**
 * Signed work: what a submitter signs about a unit and how an agent checks it against the unit it
 * was handed. Pure (no crypto here, as the Worker bundles this file too): meshctl/sign.ts signs and
 * agent/verify.ts verifies, both with Ed25519.
 *
 * Wire form, the `Mesh-Signature` header:
 *   base64url(claims) "." base64url(Ed25519 signature over exactly those claims bytes)
 * where claims is the canonical JSON of UnitClaims (object keys sorted at every level, no
 * whitespace, UTF-8). A verifier refuses claims bytes that are not canonical, so one unit has one
 * signed form and no two parsers can read different claims out of the same bytes.
 */
import { z } from "zod";
import { NAME_PATTERN, UNIT_ID_PATTERN } from "./ids.js";

export const UnitClaims = z
  .object({
    v: z.literal(1),
    mesh: z.string().regex(NAME_PATTERN),
    unitId: z.string().regex(UNIT_ID_PATTERN),
    worktype: z.string().regex(NAME_PATTERN),
    /** The node the unit is pinned to; null lets any node that holds the public key run it. */
    node: z.string().regex(NAME_PATTERN).nullable(),
    params: z.record(z.string(), z.string()),
    /** Lowercase hex sha256 of the whole payload. */
    payloadSha256: z.string().regex(/^[0-9a-f]{64}$/),
    /** Unix seconds after which the unit must not start. */
    exp: z.number().int().positive(),
  })
  .strict();
export type UnitClaims = z.infer<typeof UnitClaims>;

/** Why a signed unit is refused: stable codes; the message says what does not match. */
export const SIGNATURE_PROBLEMS = [
  "unsigned",
  "malformed",
  "bad_signature",
  "unit_mismatch",
  "mesh_mismatch",
  "worktype_mismatch",
  "node_mismatch",
  "params_mismatch",
  "payload_mismatch",
  "expired",
  "replayed",
  "no_verify_key",
  "replay_cache_failed",
] as const;
export type SignatureProblem = (typeof SIGNATURE_PROBLEMS)[number];

export type Checked<T> = { ok: true; value: T } | { ok: false; problem: SignatureProblem; message: string };

const accept = <T>(value: T): Checked<T> => ({ ok: true, value });
export const refuse = <T = never>(problem: SignatureProblem, message: string): Checked<T> => ({
  ok: false,
  problem,
  message,
});

/** The unit's detail when an agent refuses it. */
export function refusalDetail(refusal: { problem: SignatureProblem; message: string }): string {
  return `signature refused: ${refusal.problem}: ${refusal.message}`;
}

/** JSON with object keys sorted at every level and no whitespace. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  if (value !== null && typeof value === "object") {
    const record = value as Record<string, unknown>;
    const keys = Object.keys(record)
      .filter((k) => record[k] !== undefined)
      .sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(record[k])}`).join(",")}}`;
  }
  return JSON.stringify(value);
}

/** The bytes a submitter signs. */
export function claimsBytes(claims: UnitClaims): Uint8Array {
  return new TextEncoder().encode(canonicalJson(claims));
}

export function encodeSignature(claims: Uint8Array, signature: Uint8Array): string {
  return `${toBase64Url(claims)}.${toBase64Url(signature)}`;
}

export interface ParsedSignature {
  claims: UnitClaims;
  /** Exactly the bytes the signature covers. */
  signed: Uint8Array;
  signature: Uint8Array;
}

const ED25519_SIGNATURE_BYTES = 64;

export function parseSignature(text: string): Checked<ParsedSignature> {
  const parts = text.split(".");
  if (parts.length !== 2)
    return refuse("malformed", `expected two base64url parts joined by a dot, got ${parts.length} part(s)`);
  const signed = fromBase64Url(parts[0]!);
  const signature = fromBase64Url(parts[1]!);
  if (!signed || !signature) return refuse("malformed", "not base64url (unpadded, alphabet A-Z a-z 0-9 - _)");
  if (signature.byteLength !== ED25519_SIGNATURE_BYTES) {
    return refuse(
      "malformed",
      `an Ed25519 signature has ${ED25519_SIGNATURE_BYTES} bytes, got ${signature.byteLength}`,
    );
  }
  let text8: string;
  let json: unknown;
  try {
    // ignoreBOM keeps a byte order mark in the text, where the canonical check below refuses it.
    text8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(signed);
    json = JSON.parse(text8);
  } catch {
    return refuse("malformed", "the claims are not UTF-8 JSON");
  }
  const parsed = UnitClaims.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    return refuse(
      "malformed",
      `claims${issue?.path.length ? `.${issue.path.join(".")}` : ""}: ${issue?.message ?? "invalid"}`,
    );
  }
  if (canonicalJson(parsed.data) !== text8)
    return refuse("malformed", "the claims are not in canonical form (sorted keys, no whitespace)");
  return accept({ claims: parsed.data, signed, signature });
}

/** What the agent knows for itself, and the unit as the broker handed it. */
export interface ClaimsContext {
  /** This agent's node, mesh, and the unit id and work type it took the assignment for. */
  nodeId: string;
  mesh: string;
  unitId: string;
  worktype: string;
  payloadSha256: string;
  /** Milliseconds since the epoch. */
  now: number;
}

export interface ClaimedUnit {
  id: string;
  mesh: string;
  worktype: string;
  targetNode: string | null;
  params: Record<string, string>;
}

/**
 * Whether the signed claims describe this unit on this node, now. The broker's view (`unit`) and
 * the agent's own (`ctx`) must both match: a broker that lies about either is caught.
 */
export function checkClaims(claims: UnitClaims, unit: ClaimedUnit, ctx: ClaimsContext): Checked<UnitClaims> {
  for (const got of new Set([unit.id, ctx.unitId])) {
    if (claims.unitId !== got) return refuse("unit_mismatch", `signed for unit ${claims.unitId}, not ${got}`);
  }
  for (const got of new Set([unit.mesh, ctx.mesh])) {
    if (claims.mesh !== got) return refuse("mesh_mismatch", `signed for mesh ${claims.mesh}, not ${got}`);
  }
  for (const got of new Set([unit.worktype, ctx.worktype])) {
    if (claims.worktype !== got)
      return refuse("worktype_mismatch", `signed for work type ${claims.worktype}, not ${got}`);
  }
  const signedFor = claims.node ?? "any node";
  if (claims.node !== unit.targetNode) {
    return refuse(
      "node_mismatch",
      `signed for ${signedFor}, but the unit was submitted for ${unit.targetNode ?? "any node"}`,
    );
  }
  if (claims.node !== null && claims.node !== ctx.nodeId) {
    return refuse("node_mismatch", `signed for node ${claims.node}, not this node (${ctx.nodeId})`);
  }
  const differing = [...new Set([...Object.keys(claims.params), ...Object.keys(unit.params)])]
    .filter((k) => claims.params[k] !== unit.params[k])
    .sort();
  if (differing.length > 0) {
    return refuse(
      "params_mismatch",
      `params differ from the signed ones in ${differing
        .map((k) => JSON.stringify(k.slice(0, 64)))
        .slice(0, 8)
        .join(", ")}`,
    );
  }
  if (claims.payloadSha256 !== ctx.payloadSha256) {
    return refuse("payload_mismatch", `payload sha256 is ${ctx.payloadSha256}, but ${claims.payloadSha256} was signed`);
  }
  const now = Math.floor(ctx.now / 1000);
  if (claims.exp <= now) {
    return refuse(
      "expired",
      `the signature expired at ${new Date(claims.exp * 1000).toISOString()}, ${now - claims.exp} s ago`,
    );
  }
  return accept(claims);
}

function toBase64Url(bytes: Uint8Array): string {
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function fromBase64Url(text: string): Uint8Array | null {
  if (!/^[A-Za-z0-9_-]+$/.test(text) || text.length % 4 === 1) return null;
  const binary = atob(text.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((text.length + 3) % 4));
  const bytes = Uint8Array.from(binary, (c) => c.charCodeAt(0));
  // Unused trailing bits would give one value several spellings.
  return toBase64Url(bytes) === text ? bytes : null;
}
