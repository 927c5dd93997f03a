import { describe, expect, it } from "vitest";
import { type ControlFailure, type NodeIdentity, judgeFailure } from "../../agent/refusal.js";

const node: NodeIdentity = {
  broker: "http://127.0.0.1:8788",
  mesh: "default",
  nodeId: "local",
  usingCredential: false,
  credentialFile: "/w/credential.json",
  credentialFor: null,
};
const withCredential = { ...node, usingCredential: true };
const movedBroker = { ...node, credentialFor: "http://127.0.0.1:8787" };

const answered = (status: number, code?: string, message = "m"): ControlFailure => ({
  kind: "answered",
  status,
  error: code ? ({ code, message } as never) : null,
});
const refused = (code: string, message = "m"): ControlFailure => ({
  kind: "refused",
  error: { code, message } as never,
});

describe("judgeFailure", () => {
  it.each<[string, ControlFailure, NodeIdentity, "retry" | "stop", RegExp]>([
    [
      "connection refused",
      { kind: "unreachable", error: "connect ECONNREFUSED 127.0.0.1:8788" },
      withCredential,
      "retry",
      /^broker unreachable$/,
    ],
    ["broker restarting (502 from a proxy)", answered(502), withCredential, "retry", /answered 502/],
    ["broker overloaded", answered(503, "internal", "busy"), node, "retry", /answered 503: busy/],
    ["rate limited", answered(429, "rate_limited"), node, "retry", /429/],
    [
      "handshake failed though the token is good",
      answered(400, "bad_request", "takes a WebSocket upgrade"),
      withCredential,
      "retry",
      /400/,
    ],
    [
      "revoked credential",
      answered(401, "unauthorized", "invalid or revoked token"),
      withCredential,
      "stop",
      /delete \/w\/credential\.json and start with a join token/,
    ],
    [
      "unknown join token",
      answered(401, "unauthorized"),
      node,
      "stop",
      /refused the join token.*meshctl token create --role agent/,
    ],
    [
      "token without the join role",
      answered(403, "forbidden", "a read token may not join"),
      node,
      "stop",
      /a read token may not join; give a token of role agent/,
    ],
    [
      "node id already joined",
      refused("node_taken", "node local has already joined"),
      node,
      "stop",
      /meshctl node remove local/,
    ],
    [
      "credential bound to the old broker URL",
      refused("node_taken"),
      movedBroker,
      "stop",
      /is for broker http:\/\/127\.0\.0\.1:8787, not http:\/\/127\.0\.0\.1:8788; start with --broker http:\/\/127\.0\.0\.1:8787/,
    ],
    [
      "protocol mismatch",
      refused("unsupported_protocol", "protocol 2 is not supported"),
      node,
      "stop",
      /matches the broker/,
    ],
    ["broker fault during the hello", refused("internal", "the broker failed"), withCredential, "retry", /internal/],
  ])("%s: %s", (_name, failure, identity, action, text) => {
    const verdict = judgeFailure(failure, identity);
    expect(verdict.action).toBe(action);
    expect(verdict.action === "stop" ? verdict.line : verdict.reason).toMatch(text);
    // What the agent prints when it stops is one line.
    if (verdict.action === "stop") expect(verdict.line).not.toContain("\n");
  });
});
