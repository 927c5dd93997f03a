/** Which submits the control service takes, and receptor's words for the ones it refuses. */
import { describe, expect, it } from "vitest";
import { type BridgeSide, type SubmitRequest, admit } from "../../meshctl/control/admission.js";
import type { MeshStatus } from "../../shared/unit.js";
import { node, wt } from "./fixtures/node-status.js";

const status: MeshStatus = {
  mesh: "m",
  nodes: [
    node("awx-1", [wt("local", { allowRuntimeParams: true }), wt("verified", { verifySignature: true })]),
    node("awx-2", [wt("local", { allowRuntimeParams: true })]),
    node("edge-1", [wt("ansible-runner", { verifySignature: true, allowRuntimeParams: true }), wt("plain")]),
    node("edge-gone", [wt("ansible-runner", { allowRuntimeParams: true })], { connected: false }),
  ],
  units: { pending: 0, running: 0 },
};
const bridge: BridgeSide = { nodeId: "awx-1", secureLink: true, hasSigningKey: true };
const req = (node: string, worktype: string, more: Partial<SubmitRequest> = {}): SubmitRequest => ({
  node,
  worktype,
  params: {},
  signwork: false,
  ...more,
});

describe("admit", () => {
  it.each<[string, SubmitRequest, Partial<BridgeSide>, ReturnType<typeof admit>]>([
    [
      "localhost runs on the bridge's own agent",
      req("localhost", "local", { params: { params: "--private-data-dir=/x" } }),
      {},
      { ok: true, node: "awx-1", sign: false },
    ],
    ["so does the bridge's node id", req("awx-1", "local"), {}, { ok: true, node: "awx-1", sign: false }],
    [
      "signwork is ignored for local work that does not verify (AWX sets it on every submit)",
      req("localhost", "local", { signwork: true }),
      {},
      { ok: true, node: "awx-1", sign: false },
    ],
    ["local work that verifies is signed", req("localhost", "verified"), {}, { ok: true, node: "awx-1", sign: true }],
    [
      "local work that verifies needs a key",
      req("localhost", "verified"),
      { hasSigningKey: false },
      { ok: false, error: "cannot sign work: signing key is empty" },
    ],
    [
      "local work with the own agent away fails at once",
      req("localhost", "local"),
      { nodeId: "awx-3" },
      {
        ok: false,
        error: "unknown work type local (no agent with node id awx-3, this control service's own node, is connected)",
      },
    ],
    [
      "another controller's agent does not count as local",
      req("localhost", "verified"),
      { nodeId: "awx-2" },
      { ok: false, error: "unknown work type verified" },
    ],
    [
      "a remote node with a verifying work type, signed",
      req("edge-1", "ansible-runner", { signwork: true, params: { params: "--worker-info" } }),
      {},
      { ok: true, node: "edge-1", sign: true },
    ],
    [
      "a signature to a work type without verifysignature",
      req("edge-1", "plain", { signwork: true }),
      {},
      { ok: false, error: "work type did not expect a signature" },
    ],
    [
      "no signature to a work type with verifysignature",
      req("edge-1", "ansible-runner"),
      {},
      { ok: false, error: "could not verify signature: signature is empty" },
    ],
    [
      "runtime params without allowruntimeparams",
      req("edge-1", "plain", { params: { params: "-x" } }),
      {},
      { ok: false, error: "extra params provided but not allowed" },
    ],
    [
      "an empty params is no runtime params",
      req("edge-1", "plain", { params: { params: "" } }),
      {},
      { ok: true, node: "edge-1", sign: false },
    ],
    ["a work type the node lacks", req("edge-1", "nope"), {}, { ok: false, error: "unknown work type nope" }],
    [
      "signwork without a key",
      req("edge-1", "ansible-runner", { signwork: true }),
      { hasSigningKey: false },
      { ok: false, error: "cannot sign work: signing key is empty" },
    ],
    [
      "a node seen before but away now: its declaration still holds",
      req("edge-gone", "ansible-runner", { params: { params: "x" } }),
      {},
      { ok: true, node: "edge-gone", sign: false },
    ],
    [
      "a node never seen: the unit waits for it",
      req("edge-new", "anything", { signwork: true }),
      {},
      { ok: true, node: "edge-new", sign: true },
    ],
    [
      "secret_* params over plain HTTP",
      req("edge-1", "plain", { params: { secret_kube_pod: "p" } }),
      { secureLink: false },
      { ok: false, error: "cannot send secrets over a non-TLS connection" },
    ],
    [
      "secret_* params over HTTPS or loopback",
      req("edge-1", "plain", { params: { secret_kube_pod: "p" } }),
      {},
      { ok: true, node: "edge-1", sign: false },
    ],
  ])("%s", (_name, request, side, expected) => {
    expect(admit(request, status, { ...bridge, ...side })).toEqual(expected);
  });
});
