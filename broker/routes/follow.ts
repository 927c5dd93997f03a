/**
 * Long-lived answers (SSE, a results follow) pass through the Worker, which ends them once the
 * credential that opened them no longer holds.
 */
import { MeshError } from "../../shared/errors.js";
import { authenticate } from "../auth.js";
import { type Ctx, meshName } from "./context.js";

/** An object's answer, passed on with headers the app may still change (an RPC's arrive immutable). */
export function forward(response: Response): Response {
  return new Response(response.body, response);
}

/** How often a long-lived answer checks that its credential still holds. */
const RECHECK_MS = 3_000;

/**
 * Passes a long-lived answer through, ending it within RECHECK_MS once the credential that opened it
 * no longer authenticates: a revoked token, a removed node, an expired credential.
 *
 * Why polling here rather than pushing a close from the revoke: these streams are served by Mesh and
 * Unit objects the Access object knows nothing about, and the Worker invocation that serves the
 * stream is the one place that holds both the credential and the stream. One Access lookup per open
 * stream every few seconds covers every way a credential stops holding with one rule. Agent sockets
 * are different: after the 101 the Worker is out of their path, so revocation closes them by tag.
 */
export function whileAuthorized(c: Ctx, response: Response): Response {
  if (!response.body || !response.ok) return forward(response);
  const header = c.req.header("authorization");
  const mesh = meshName(c);
  // The bytes go through a native pipe, not a JS stream: a results follow carries megabytes a
  // second, and a JS pull per chunk of the object's answer cost a tenth of the broker's thread.
  const { readable, writable } = new IdentityTransformStream();
  const revoked = new AbortController();
  const timer = setInterval(() => {
    authenticate(header, c.env, mesh).catch((error: unknown) => {
      // Only a definite "no": a transient failure of the Access object must not cut streams.
      if (!(error instanceof MeshError) || error.code !== "unauthorized") return;
      revoked.abort("credential revoked");
    });
  }, RECHECK_MS);
  void response.body
    // A revoked credential (or a failed source) ends the answer cleanly, as its end would: the
    // source is cancelled, the reader's stream closed rather than errored.
    .pipeTo(writable, { signal: revoked.signal, preventAbort: true })
    .catch(() => writable.close())
    .catch(() => {})
    .finally(() => clearInterval(timer));
  return new Response(readable, response);
}
