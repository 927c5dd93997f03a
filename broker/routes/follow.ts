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
  const reader = response.body.getReader();
  let timer: ReturnType<typeof setInterval> | null = null;
  let ended = false;
  const end = (controller: ReadableStreamDefaultController<Uint8Array>) => {
    if (ended) return;
    ended = true;
    if (timer !== null) clearInterval(timer);
    controller.close();
  };
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      timer = setInterval(() => {
        authenticate(header, c.env, mesh).catch((error: unknown) => {
          // Only a definite "no": a transient failure of the Access object must not cut streams.
          if (!(error instanceof MeshError) || error.code !== "unauthorized") return;
          void reader.cancel("credential revoked").catch(() => {});
          end(controller);
        });
      }, RECHECK_MS);
    },
    async pull(controller) {
      const { done, value } = await reader.read().catch(() => ({ done: true as const, value: undefined }));
      if (ended) return;
      if (done) return end(controller);
      controller.enqueue(value);
    },
    cancel(reason) {
      ended = true;
      if (timer !== null) clearInterval(timer);
      return reader.cancel(reason);
    },
  });
  return new Response(body, response);
}
