/**
 * Checks a signed unit before its command may start: an Ed25519 signature by a key this agent
 * trusts, over claims that match the unit as handed out and as this agent knows it, a payload with
 * the signed sha256, a signature not yet expired, and a unit id never accepted here before.
 */
import { sha256File } from "../shared/node/hash.js";
import { createPublicKey, type KeyObject, verify } from "node:crypto";
import { readFile } from "node:fs/promises";
import { CliError, EXIT_USAGE } from "../shared/node/cli.js";
import type { Logger } from "../shared/node/log.js";
import {
  type Checked,
  type ClaimedUnit,
  type UnitClaims,
  checkClaims,
  parseSignature,
  refuse,
  refusalDetail,
} from "../shared/signing.js";
import type { ReplayCache } from "./replay.js";

/** A --verify-key that is no usable public key: exits 2, as a wrong option does. */
export class KeyError extends CliError {
  override name = "KeyError";
  constructor(message: string) {
    super("MESH_ERR_VERIFY_KEY", message, EXIT_USAGE);
  }
}

/** An Ed25519 public key in PEM (SPKI), as `meshctl keygen` writes it. */
export async function loadVerifyKey(path: string): Promise<KeyObject> {
  let pem: string;
  try {
    pem = await readFile(path, "utf8");
  } catch (error) {
    throw new KeyError(`cannot read verify key ${path}: ${error instanceof Error ? error.message : String(error)}`);
  }
  if (pem.includes("PRIVATE KEY"))
    throw new KeyError(
      `${path} holds a private key; give the agent only the public key (meshctl keygen writes it as verify-key.pem)`,
    );
  let key: KeyObject;
  try {
    key = createPublicKey(pem);
  } catch {
    throw new KeyError(`${path} is not a PEM public key`);
  }
  if (key.asymmetricKeyType !== "ed25519")
    throw new KeyError(
      `${path} is an ${key.asymmetricKeyType ?? "unknown"} key; signed work uses Ed25519 (make one with meshctl keygen)`,
    );
  return key;
}

/** The unit as the `attached` message describes it. */
export interface SignedUnit extends ClaimedUnit {
  signature: string | null;
}

/** What a runner needs: a verdict on one unit whose payload is complete at `payloadPath`. */
export interface UnitVerifier {
  verify(
    unit: SignedUnit,
    local: { unitId: string; worktype: string },
    payloadPath: string,
  ): Promise<Checked<UnitClaims>>;
}

export class WorkVerifier implements UnitVerifier {
  constructor(
    private readonly keys: KeyObject[],
    private readonly node: { nodeId: string; mesh: string },
    private readonly replay: ReplayCache,
    private readonly now: () => number = Date.now,
  ) {}

  async verify(
    unit: SignedUnit,
    local: { unitId: string; worktype: string },
    payloadPath: string,
  ): Promise<Checked<UnitClaims>> {
    if (unit.signature === null)
      return refuse("unsigned", `work type ${local.worktype} runs only signed units (meshctl work submit --sign-key)`);
    const parsed = parseSignature(unit.signature);
    if (!parsed.ok) return parsed;
    const { claims, signed, signature } = parsed.value;
    if (!this.keys.some((key) => verify(null, signed, key, signature))) {
      return refuse("bad_signature", "the signature does not verify with this agent's public key");
    }
    const checked = checkClaims(claims, unit, {
      ...this.node,
      ...local,
      payloadSha256: await sha256File(payloadPath),
      now: this.now(),
    });
    if (!checked.ok) return checked;
    let fresh: boolean;
    try {
      fresh = await this.replay.claim(`${claims.mesh}/${claims.unitId}`, claims.exp, this.now());
    } catch (error) {
      return refuse(
        "replay_cache_failed",
        `cannot record the unit as used: ${error instanceof Error ? error.message : String(error)}`,
      );
    }
    if (!fresh)
      return refuse("replayed", `unit ${claims.unitId} was already accepted by this node; a signed unit runs once`);
    return checked;
  }
}

/** A unit's verdict, logged: the refusal detail the unit ends with, or null when it may run. */
export async function checkSignature(
  verifier: UnitVerifier | null,
  unit: SignedUnit,
  local: { unitId: string; worktype: string },
  payloadPath: string,
  log: Logger,
): Promise<string | null> {
  const verdict = verifier
    ? await verifier.verify(unit, local, payloadPath)
    : refuse("no_verify_key", "this agent has no public key to verify signed units with");
  if (verdict.ok) {
    log.info("unit:signature-verified", { unit: local.unitId, exp: verdict.value.exp });
    return null;
  }
  log.warn("unit:signature-refused", { unit: local.unitId, problem: verdict.problem, message: verdict.message });
  return refusalDetail(verdict);
}
