/**
 * Signed work against a real agent whose `sh` work type has verifysignature: true. Signatures come
 * from `meshctl work submit --sign-key`, or are made here for what meshctl would never send
 * (the broker playing tricks: another payload, other params, an old signature).
 */
import { spawn } from "node:child_process";
import { createHash, createPrivateKey, type KeyObject } from "node:crypto";
import { readFile, readdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { signClaims } from "../../meshctl/sign.js";
import { newUnitId } from "../../shared/ids.js";
import type { UnitClaims } from "../../shared/signing.js";
import type { UnitRecord } from "../../shared/unit.js";
import { agentArgv, type RunningAgent, api, broker, newMesh, sh, startAgent, tempDir, waitFor } from "./harness.js";

const mesh = newMesh();
const NODE = "signer";
let agent: RunningAgent;
let keyDir: string;
let otherKeyDir: string;
let signingKey: KeyObject;

const config = (
  publicKey: string,
) => `- work-command: {worktype: sh, command: sh, params: "-c", allowruntimeparams: true, verifysignature: true}
- work-command: {worktype: plain, command: sh, params: "-c", allowruntimeparams: true}
- work-verification:
    publickey: ${publicKey}
`;

beforeAll(async () => {
  keyDir = join(await tempDir("mesh-keys-"), "keys");
  otherKeyDir = join(await tempDir("mesh-keys-"), "keys");
  for (const dir of [keyDir, otherKeyDir]) {
    const made = await sh(mesh, `$MESHCTL keygen --out ${dir}`);
    expect(made.code, made.stderr).toBe(0);
    expect(JSON.parse(made.stdout.toString())).toEqual({
      privateKey: join(dir, "signing-key.pem"),
      publicKey: join(dir, "verify-key.pem"),
    });
  }
  signingKey = createPrivateKey(await readFile(join(keyDir, "signing-key.pem")));
  agent = await startAgent({ mesh, nodeId: NODE, config: config(join(keyDir, "verify-key.pem")), capacity: 2 });
});

afterAll(async () => {
  await agent?.stop();
});

const unit = async (id: string) => (await api<UnitRecord>(mesh, "GET", `/units/${id}`)).body;

async function final(id: string): Promise<UnitRecord> {
  await waitFor(async () => ["Succeeded", "Failed", "Canceled"].includes((await unit(id)).state), `unit ${id} to end`);
  return unit(id);
}

/** Signs claims for `signed`, then submits `sent` (the same unless a test says otherwise) by hand. */
async function submitSigned(opts: {
  script: string;
  payload?: string;
  sent?: { script?: string; payload?: string };
  claims?: Partial<UnitClaims>;
  id?: string;
}) {
  const payload = opts.payload ?? "";
  const id = opts.id ?? newUnitId();
  const claims: UnitClaims = {
    v: 1,
    mesh,
    unitId: id,
    worktype: "sh",
    node: NODE,
    params: { params: opts.script },
    payloadSha256: createHash("sha256").update(payload).digest("hex"),
    exp: Math.floor(Date.now() / 1000) + 600,
    ...opts.claims,
  };
  const signature = signClaims(claims, signingKey);
  return {
    id,
    signature,
    reply: await post(id, signature, opts.sent?.script ?? opts.script, opts.sent?.payload ?? payload),
  };
}

function post(id: string, signature: string | null, script: string, payload: string) {
  const headers: Record<string, string> = signature ? { "mesh-signature": signature } : {};
  return api<UnitRecord & { error?: { code: string; message: string } }>(
    mesh,
    "POST",
    `/units?worktype=sh&node=${NODE}&id=${id}&param.params=${encodeURIComponent(script)}`,
    { body: payload, headers },
  );
}

async function expectRefused(id: string, detail: RegExp) {
  const record = await final(id);
  expect(record).toMatchObject({ state: "Failed", stdoutSize: 0, startedAt: null });
  expect(record.detail).toMatch(/^signature refused: /);
  expect(record.detail).toMatch(detail);
}

describe("signed work", () => {
  it("runs a unit signed by meshctl, with the payload from stdin spooled to a private file that is removed afterwards", async () => {
    const spoolDir = await tempDir("meshctl-tmp-");
    const run = await sh(
      mesh,
      `printf 'signed payload' | TMPDIR=${spoolDir} $MESHCTL work submit sh --node ${NODE} --sign-key ${keyDir}/signing-key.pem -a params=cat -p - -f`,
    );
    expect(run.stderr).toBe("");
    expect(run.code).toBe(0);
    expect(run.stdout.toString()).toBe("signed payload");
    expect(await readdir(spoolDir)).toEqual([]);
    const units = await api<{ id: string }[]>(mesh, "GET", "/units");
    expect(units.body).toHaveLength(1);
    expect(await unit(units.body[0]!.id)).toMatchObject({ state: "Succeeded", signed: true });
  });

  it("signs a payload file, and without --node lets any node with the key run it", async () => {
    const file = join(await tempDir(), "payload");
    await writeFile(file, "from a file\n");
    const run = await sh(
      mesh,
      `$MESHCTL work submit sh --sign-key ${keyDir}/signing-key.pem --sign-ttl 1m -a params=cat -p ${file} -f`,
    );
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout.toString()).toBe("from a file\n");
  });

  it("refuses an unsigned unit without running it", async () => {
    const reply = await post(newUnitId(), null, "'echo unsigned-ran'", "");
    expect(reply.status).toBe(201);
    await expectRefused(reply.body.id, /^signature refused: unsigned: work type sh runs only signed units/);
  });

  it("refuses a unit signed with another key", async () => {
    const run = await sh(
      mesh,
      `$MESHCTL work submit sh --node ${NODE} --sign-key ${otherKeyDir}/signing-key.pem -a params="'echo wrong-key-ran'" -p /dev/null -f`,
    );
    expect(run.code).toBe(1);
    expect(run.stdout.toString()).toBe("");
    expect(run.stderr).toMatch(
      /Failed: signature refused: bad_signature: the signature does not verify with this agent's public key/,
    );
  });

  it("refuses a payload other than the one signed", async () => {
    const { id, reply } = await submitSigned({
      script: "cat",
      payload: "echo harmless\n",
      sent: { payload: "echo tampered\n" },
    });
    expect(reply.status).toBe(201);
    await expectRefused(
      id,
      /^signature refused: payload_mismatch: payload sha256 is [0-9a-f]{64}, but [0-9a-f]{64} was signed$/,
    );
  });

  it("refuses params other than the ones signed", async () => {
    const { id, reply } = await submitSigned({
      script: "'echo signed-params'",
      sent: { script: "'echo changed-params'" },
    });
    expect(reply.status).toBe(201);
    await expectRefused(id, /^signature refused: params_mismatch: params differ from the signed ones in "params"$/);
  });

  it("refuses an expired signature", async () => {
    const { id, reply } = await submitSigned({
      script: "'echo expired-ran'",
      claims: { exp: Math.floor(Date.now() / 1000) - 60 },
    });
    expect(reply.status).toBe(201);
    await expectRefused(id, /^signature refused: expired: the signature expired at \S+, \d+ s ago$/);
  });

  it("refuses a unit signed for another node", async () => {
    const { id, reply } = await submitSigned({ script: "'echo other-node-ran'", claims: { node: "elsewhere" } });
    expect(reply.status).toBe(201);
    await expectRefused(
      id,
      /^signature refused: node_mismatch: signed for elsewhere, but the unit was submitted for signer$/,
    );
  });

  it("a signed unit id is used once: the same signature again is refused by the broker (the agent's own record is in test/unit/verify.test.ts)", async () => {
    const { id, signature, reply } = await submitSigned({ script: "'echo once'" });
    expect(reply.status).toBe(201);
    expect(await final(id)).toMatchObject({ state: "Succeeded" });
    const again = await post(id, signature, "'echo once'", "");
    expect(again.status).toBe(409);
    expect(again.body.error?.code).toBe("unit_exists");
    expect((await api(mesh, "GET", `/units/${id}/results`)).body).toBe("once\n");
  });

  it("keeps serving after refusals: a signed unit and a unit of a work type without verifysignature both run", async () => {
    const { id } = await submitSigned({ script: "'echo still-serving'" });
    expect(await final(id)).toMatchObject({ state: "Succeeded" });
    expect((await api(mesh, "GET", `/units/${id}/results`)).body).toBe("still-serving\n");
    const plain = await api<UnitRecord>(
      mesh,
      "POST",
      `/units?worktype=plain&param.params=${encodeURIComponent("'echo plain'")}`,
      { body: "" },
    );
    expect(await final(plain.body.id)).toMatchObject({ state: "Succeeded" });
    expect(agent.logs()).toMatch(/"event":"unit:signature-refused".*"problem":"unsigned"/);
  });

  it.each([
    [
      "no public key",
      () => [],
      /work type sh has verifysignature: true, so give the public key its units must be signed with: --verify-key FILE, MESH_VERIFY_KEY, or a work-verification entry/,
    ],
    [
      "its private key as --verify-key",
      () => ["--verify-key", join(keyDir, "signing-key.pem")],
      /signing-key\.pem holds a private key; give the agent only the public key/,
    ],
  ])("an agent with a verifysignature work type and %s refuses to start", async (_name, args, message) => {
    const dir = await tempDir();
    const configPath = join(dir, "agent.yml");
    await writeFile(configPath, "- work-command: {worktype: sh, command: sh, verifysignature: true}\n");
    const child = spawn(
      process.execPath,
      [
        ...agentArgv({
          broker: broker().url,
          token: "t",
          mesh,
          nodeId: "keyless",
          config: configPath,
          workDir: join(dir, "work"),
        }),
        ...args(),
      ],
      {
        stdio: ["ignore", "ignore", "pipe"],
      },
    );
    let stderr = "";
    child.stderr.on("data", (d) => (stderr += d));
    const code = await new Promise<number | null>((resolve) => child.once("exit", resolve));
    expect(code).toBe(2);
    expect(stderr).toMatch(message);
  });
});
