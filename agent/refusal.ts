/**
 * Why the control link could not be had, and whether trying again can help. A broker that is down,
 * restarting or behind a failing proxy comes back, so the agent retries it with backoff; a broker
 * that answers "no" to this node (a revoked credential, a node id already joined, a protocol it does
 * not speak) answers the same way forever, so the agent stops with one line saying what to do
 * instead of asking twice a second.
 */
import type { ErrorBody } from "../shared/errors.js";
import { CliError } from "../shared/node/cli.js";

export type ControlFailure =
  /** No HTTP answer at all: connection refused or reset, DNS, TLS, timeout. */
  | { kind: "unreachable"; error: string }
  /** The WebSocket handshake was answered with an HTTP status (read from a probe, see socket.ts). */
  | { kind: "answered"; status: number; error: ErrorBody | null }
  /** The socket opened, then the broker refused the hello with an error frame. */
  | { kind: "refused"; error: ErrorBody };

export interface NodeIdentity {
  broker: string;
  mesh: string;
  nodeId: string;
  /** Whether the agent presented its node credential (else the join token). */
  usingCredential: boolean;
  credentialFile: string;
  /** The broker URL a credential in the work dir is bound to, when that is not `broker`. */
  credentialFor: string | null;
}

export type Verdict = { action: "retry"; reason: string } | { action: "stop"; line: string };

const retry = (reason: string): Verdict => ({ action: "retry", reason });
const stop = (line: string): Verdict => ({ action: "stop", line });

const said = (error: ErrorBody | null) => (error ? `: ${error.message}` : "");

export function judgeFailure(failure: ControlFailure, node: NodeIdentity): Verdict {
  const removeNode = `meshctl node remove ${node.nodeId}`;
  if (failure.kind === "unreachable") return retry("broker unreachable");
  if (failure.kind === "answered") {
    const { status, error } = failure;
    if (status === 401 && node.usingCredential) {
      return stop(
        `the broker refused node ${node.nodeId}'s credential${said(error)} (an admin removed the node, or the broker lost its state); to join again, delete ${node.credentialFile} and start with a join token (--token)`,
      );
    }
    if (status === 401)
      return stop(
        `the broker refused the join token${said(error)}; give a token of role agent with --token or MESH_TOKEN (meshctl token create --role agent)`,
      );
    if (status === 403)
      return stop(
        `the broker refused to let this agent join${said(error)}; give a token of role agent with --token or MESH_TOKEN`,
      );
    // 5xx, 429, a proxy's 502, or a handshake that failed for another reason: passing states.
    return retry(`broker answered ${status}${said(error)}`);
  }
  const { error } = failure;
  if (error.code === "node_taken" && node.credentialFor !== null) {
    return stop(
      `node ${node.nodeId} has already joined mesh ${node.mesh}, and its credential in ${node.credentialFile} is for broker ${node.credentialFor}, not ${node.broker}; start with --broker ${node.credentialFor} if that is the same broker, else have an admin run \`${removeNode}\` and start again to join anew`,
    );
  }
  if (error.code === "node_taken") {
    return stop(
      `${error.message}; start with another --node-id, or have an admin run \`${removeNode}\` and start again to join anew`,
    );
  }
  if (error.code === "unsupported_protocol")
    return stop(`${error.message}; run a mesh-agent version that matches the broker`);
  return retry(`broker refused the hello: ${error.code}: ${error.message}`);
}

/** Thrown out of Agent.run() on a refusal retrying cannot fix; the CLI prints it and exits 1. */
export class AgentRefused extends CliError {
  override name = "AgentRefused";
  constructor(line: string) {
    super("MESH_ERR_REFUSED", line);
  }
}
