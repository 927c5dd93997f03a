import { generateKeyPairSync, sign } from "node:crypto";
import { describe, expect, it } from "vitest";
import {
  type ClaimedUnit,
  type ClaimsContext,
  type UnitClaims,
  canonicalJson,
  checkClaims,
  claimsBytes,
  encodeSignature,
  parseSignature,
  refusalDetail,
} from "../../shared/signing.js";

const DIGEST = "a".repeat(64);
const NOW = Date.UTC(2026, 10, 29, 9, 0, 0);

const claims: UnitClaims = {
  v: 1,
  mesh: "prod",
  unitId: "Ab3dEf7h",
  worktype: "sh",
  node: "edge-1",
  params: { params: "-c 'echo hi'" },
  payloadSha256: DIGEST,
  exp: NOW / 1000 + 600,
};
const unit: ClaimedUnit = {
  id: "Ab3dEf7h",
  mesh: "prod",
  worktype: "sh",
  targetNode: "edge-1",
  params: { params: "-c 'echo hi'" },
};
const ctx: ClaimsContext = {
  nodeId: "edge-1",
  mesh: "prod",
  unitId: "Ab3dEf7h",
  worktype: "sh",
  payloadSha256: DIGEST,
  now: NOW,
};

const b64 = (text: string) => Buffer.from(text).toString("base64url");
const SIG64 = Buffer.alloc(64, 7).toString("base64url");

describe("canonicalJson", () => {
  it("sorts keys at every level, keeps array order, and has no whitespace", () => {
    expect(canonicalJson({ b: 1, a: { d: [3, { z: 1, y: 2 }], c: null }, e: "x y" })).toBe(
      '{"a":{"c":null,"d":[3,{"y":2,"z":1}]},"b":1,"e":"x y"}',
    );
  });

  it("leaves out keys whose value is undefined, as JSON.stringify does", () => {
    expect(canonicalJson({ b: 1, a: undefined })).toBe('{"b":1}');
  });

  it("gives the claims one spelling whatever order they were built in", () => {
    const reordered = Object.fromEntries(Object.entries(claims).reverse()) as UnitClaims;
    expect(new TextDecoder().decode(claimsBytes(reordered))).toBe(new TextDecoder().decode(claimsBytes(claims)));
    expect(canonicalJson(claims)).toBe(
      `{"exp":${claims.exp},"mesh":"prod","node":"edge-1","params":{"params":"-c 'echo hi'"},"payloadSha256":"${DIGEST}","unitId":"Ab3dEf7h","v":1,"worktype":"sh"}`,
    );
  });
});

describe("encodeSignature and parseSignature", () => {
  it("round-trips claims and an Ed25519 signature that verifies over the signed bytes", () => {
    const { privateKey } = generateKeyPairSync("ed25519");
    const bytes = claimsBytes(claims);
    const wire = encodeSignature(bytes, sign(null, bytes, privateKey));
    expect(wire).toMatch(/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{86}$/);
    const parsed = parseSignature(wire);
    expect(parsed.ok && parsed.value.claims).toEqual(claims);
    expect(parsed.ok && Buffer.from(parsed.value.signed).equals(Buffer.from(bytes))).toBe(true);
  });

  it.each([
    ["no dot", b64(canonicalJson(claims)), /two base64url parts/],
    ["three parts", `${b64(canonicalJson(claims))}.${SIG64}.${SIG64}`, /two base64url parts/],
    ["empty claims", `.${SIG64}`, /not base64url/],
    ["padding", `${b64(canonicalJson(claims))}=.${SIG64}`, /not base64url/],
    [
      "standard base64 alphabet",
      `${Buffer.from(canonicalJson(claims)).toString("base64").replace(/=+$/, "")}+/.${SIG64}`,
      /not base64url/,
    ],
    ["non-zero trailing bits", `${b64(canonicalJson(claims))}.${SIG64.slice(0, -1)}B`, /not base64url/],
    ["short signature", `${b64(canonicalJson(claims))}.${Buffer.alloc(63).toString("base64url")}`, /64 bytes, got 63/],
    ["claims not JSON", `${b64("not json")}.${SIG64}`, /not UTF-8 JSON/],
    ["claims not UTF-8", `${Buffer.from([0xff, 0xfe]).toString("base64url")}.${SIG64}`, /not UTF-8 JSON/],
    ["unknown version", `${b64(canonicalJson({ ...claims, v: 2 }))}.${SIG64}`, /claims\.v/],
    ["extra claim", `${b64(canonicalJson({ ...claims, admin: true }))}.${SIG64}`, /claims: .*admin/],
    ["bad unit id", `${b64(canonicalJson({ ...claims, unitId: "../etc" }))}.${SIG64}`, /claims\.unitId/],
    [
      "uppercase digest",
      `${b64(canonicalJson({ ...claims, payloadSha256: DIGEST.toUpperCase() }))}.${SIG64}`,
      /claims\.payloadSha256/,
    ],
    ["non-string param", `${b64(canonicalJson({ ...claims, params: { n: 1 } }))}.${SIG64}`, /claims\.params\.n/],
    ["fractional exp", `${b64(canonicalJson({ ...claims, exp: 1.5 }))}.${SIG64}`, /claims\.exp/],
    ["unsorted keys", `${b64(JSON.stringify(claims))}.${SIG64}`, /canonical form/],
    ["whitespace", `${b64(` ${canonicalJson(claims)}`)}.${SIG64}`, /canonical form/],
    ["a claims part of 4n+1 characters", `AAAAA.${SIG64}`, /not base64url/],
    [
      "a byte that is not UTF-8 inside a string",
      `${Buffer.concat(
        canonicalJson({ ...claims, mesh: "MARK" })
          .split("MARK")
          .flatMap((part, i) => (i === 0 ? [Buffer.from(part)] : [Buffer.from([0xff]), Buffer.from(part)])),
      ).toString("base64url")}.${SIG64}`,
      /not UTF-8 JSON/,
    ],
    ["a byte order mark", `${b64(`\uFEFF${canonicalJson(claims)}`)}.${SIG64}`, /not UTF-8 JSON|canonical form/],
    [
      "a duplicate key",
      `${b64(canonicalJson(claims).replace('"mesh":"prod"', '"mesh":"evil","mesh":"prod"'))}.${SIG64}`,
      /canonical form/,
    ],
  ])("refuses %s as malformed", (_name, wire, message) => {
    const parsed = parseSignature(wire);
    expect(parsed.ok).toBe(false);
    if (!parsed.ok) {
      expect(parsed.problem).toBe("malformed");
      expect(parsed.message).toMatch(message);
    }
  });
});

describe("checkClaims", () => {
  it("accepts claims that match the unit, the node and the payload before they expire", () => {
    expect(checkClaims(claims, unit, ctx)).toEqual({ ok: true, value: claims });
    const anyNode = { ...claims, node: null };
    expect(checkClaims(anyNode, { ...unit, targetNode: null }, { ...ctx, nodeId: "edge-2" }).ok).toBe(true);
  });

  it.each<[string, Partial<UnitClaims>, Partial<ClaimedUnit>, Partial<ClaimsContext>, string, RegExp]>([
    ["unit id (broker)", {}, { id: "Zzzzzzz9" }, {}, "unit_mismatch", /signed for unit Ab3dEf7h, not Zzzzzzz9/],
    ["unit id (agent)", {}, {}, { unitId: "Zzzzzzz9" }, "unit_mismatch", /not Zzzzzzz9/],
    ["mesh (broker)", {}, { mesh: "dev" }, {}, "mesh_mismatch", /signed for mesh prod, not dev/],
    ["mesh (agent)", {}, {}, { mesh: "dev" }, "mesh_mismatch", /not dev/],
    [
      "work type (broker)",
      {},
      { worktype: "ansible-runner" },
      {},
      "worktype_mismatch",
      /signed for work type sh, not ansible-runner/,
    ],
    ["work type (agent)", {}, {}, { worktype: "bash" }, "worktype_mismatch", /not bash/],
    [
      "target node",
      {},
      { targetNode: "edge-2" },
      {},
      "node_mismatch",
      /^signed for edge-1, but the unit was submitted for edge-2$/,
    ],
    ["pin dropped by the broker", {}, { targetNode: null }, {}, "node_mismatch", /submitted for any node/],
    [
      "pin added by the broker",
      { node: null },
      {},
      {},
      "node_mismatch",
      /signed for any node, but the unit was submitted for edge-1/,
    ],
    // Submitted for edge-1 as signed, but delivered elsewhere: only the agent's own check sees it.
    ["this node", {}, {}, { nodeId: "edge-2" }, "node_mismatch", /^signed for node edge-1, not this node \(edge-2\)$/],
    ["a changed param", {}, { params: { params: "-c 'rm -rf /'" } }, {}, "params_mismatch", /in "params"/],
    ["an added param", {}, { params: { params: "-c 'echo hi'", extra: "1" } }, {}, "params_mismatch", /in "extra"/],
    ["a dropped param", {}, { params: {} }, {}, "params_mismatch", /in "params"/],
    [
      "payload",
      {},
      {},
      { payloadSha256: "b".repeat(64) },
      "payload_mismatch",
      /payload sha256 is b{64}, but a{64} was signed/,
    ],
    ["expiry reached", { exp: NOW / 1000 }, {}, {}, "expired", /expired at 2026-11-29T09:00:00.000Z, 0 s ago/],
    ["expiry passed", { exp: NOW / 1000 - 90 }, {}, {}, "expired", /expired at 2026-11-29T08:58:30.000Z, 90 s ago/],
  ])("refuses a mismatch: %s", (_name, claimChange, unitChange, ctxChange, problem, message) => {
    const checked = checkClaims({ ...claims, ...claimChange }, { ...unit, ...unitChange }, { ...ctx, ...ctxChange });
    expect(checked.ok).toBe(false);
    if (!checked.ok) {
      expect(checked.problem).toBe(problem);
      expect(checked.message).toMatch(message);
    }
  });

  it("says in the unit's detail that the signature was refused, and why", () => {
    expect(refusalDetail({ problem: "unsigned", message: "work type sh runs only signed units" })).toBe(
      "signature refused: unsigned: work type sh runs only signed units",
    );
  });
});
