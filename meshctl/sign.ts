/**
 * The submitter's side of signed work: Ed25519 key pairs, the payload's digest, and the
 * `Mesh-Signature` for one unit (format in shared/signing.ts).
 */
import { createPrivateKey, generateKeyPairSync, type KeyObject, sign } from "node:crypto";
import { mkdir, open, readFile } from "node:fs/promises";
import { join } from "node:path";
import { CliError } from "../shared/node/cli.js";
import { sha256File } from "../shared/node/hash.js";
import { newUnitId } from "../shared/ids.js";
import { type UnitClaims, claimsBytes, encodeSignature } from "../shared/signing.js";

export const PRIVATE_KEY_FILE = "signing-key.pem";
export const PUBLIC_KEY_FILE = "verify-key.pem";

export class SigningError extends CliError {
  override name = "SigningError";
  constructor(message: string) {
    super("MESH_ERR_SIGNING_KEY", message);
  }
}

/** Writes a new key pair into `dir`; never overwrites a key that is already there. */
export async function generateKeys(dir: string): Promise<{ privateKey: string; publicKey: string }> {
  const { privateKey, publicKey } = generateKeyPairSync("ed25519");
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const paths = { privateKey: join(dir, PRIVATE_KEY_FILE), publicKey: join(dir, PUBLIC_KEY_FILE) };
  await writeNew(paths.privateKey, privateKey.export({ type: "pkcs8", format: "pem" }) as string, 0o600);
  await writeNew(paths.publicKey, publicKey.export({ type: "spki", format: "pem" }) as string, 0o644);
  return paths;
}

async function writeNew(path: string, text: string, mode: number): Promise<void> {
  let file;
  try {
    file = await open(path, "wx", mode);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "EEXIST")
      throw new SigningError(`${path} exists already; choose another --out directory`);
    throw error;
  }
  try {
    await file.writeFile(text);
  } finally {
    await file.close();
  }
}

export async function loadSigningKey(path: string): Promise<KeyObject> {
  let pem: string;
  try {
    pem = await readFile(path, "utf8");
  } catch (error) {
    throw new SigningError(
      `cannot read signing key ${path}: ${error instanceof Error ? error.message : String(error)}`,
    );
  }
  let key: KeyObject;
  try {
    key = createPrivateKey(pem);
  } catch {
    throw new SigningError(`${path} is not a PEM private key (meshctl keygen makes one)`);
  }
  if (key.asymmetricKeyType !== "ed25519")
    throw new SigningError(
      `${path} is an ${key.asymmetricKeyType ?? "unknown"} key; signed work uses Ed25519 (meshctl keygen makes one)`,
    );
  return key;
}

export function signClaims(claims: UnitClaims, key: KeyObject): string {
  const bytes = claimsBytes(claims);
  return encodeSignature(bytes, sign(null, bytes, key));
}

export interface SignedSubmission {
  unitId: string;
  signature: string;
}

/** Everything `work submit --sign-key` sends beyond an ordinary submit. */
export interface UnitToSign {
  ttlMs: number;
  mesh: string;
  worktype: string;
  node: string | null;
  params: Record<string, string>;
  /** The payload as it will be uploaded (a regular file: see payload.ts). */
  payloadPath: string;
}

/** The `Mesh-Signature` of one unit whose id the submitter chose; shared by submit and the control service. */
export async function signUnit(key: KeyObject, unitId: string, unit: UnitToSign): Promise<string> {
  const claims: UnitClaims = {
    v: 1,
    mesh: unit.mesh,
    unitId,
    worktype: unit.worktype,
    node: unit.node,
    params: unit.params,
    payloadSha256: await sha256File(unit.payloadPath),
    exp: Math.floor((Date.now() + unit.ttlMs) / 1000),
  };
  return signClaims(claims, key);
}

export async function signSubmission(opts: UnitToSign & { keyPath: string }): Promise<SignedSubmission> {
  const key = await loadSigningKey(opts.keyPath);
  const unitId = newUnitId();
  return { unitId, signature: await signUnit(key, unitId, opts) };
}
