/**
 * Whether the control service takes a `work submit`, decided before the client sends its payload,
 * with receptor's words for each refusal (workceptor's controlsvc.go, workceptor.go, command.go),
 * from what the nodes declared in their hello. Receptor refuses these at submit; a bridge that took
 * them would answer "Job Submitted" and fail the unit later, which AWX reads differently.
 *
 * Where work runs: `localhost` (receptorctl's default node), an empty node or the bridge's own
 * node id is receptor's local work. Here that is the agent whose node id is the bridge's (the
 * controller's own agent, e.g. for AWX's `local` work type and its `only_transmit_kwargs`, which
 * rely on the controller's private_data_dir), and no other node.
 */
import type { MeshStatus } from "../../shared/unit.js";
import { reachableNodes } from "./records.js";

export interface SubmitRequest {
  node: string;
  worktype: string;
  params: Record<string, string>;
  signwork: boolean;
}

export interface BridgeSide {
  nodeId: string;
  /** The broker link is HTTPS, or loopback (nothing crosses a network in the clear). */
  secureLink: boolean;
  hasSigningKey: boolean;
}

/** `sign`: the unit must carry a signature (its node's work type verifies them). */
export type Admission = { ok: true; node: string; sign: boolean } | { ok: false; error: string };

/** receptor's test for a secret param (remote_work.go): the name starts with secret_, any case. */
export const isSecretParam = (name: string) => name.toLowerCase().startsWith("secret_");

export function isLocalNode(node: string, bridgeNodeId: string): boolean {
  return node === "" || node.toLowerCase() === "localhost" || node === bridgeNodeId;
}

export function admit(request: SubmitRequest, status: MeshStatus, bridge: BridgeSide): Admission {
  if (Object.keys(request.params).some(isSecretParam) && !bridge.secureLink) {
    // receptor sends secret_* params only over TLS; here the hop that could leak them is the broker link.
    return refuse("cannot send secrets over a non-TLS connection");
  }
  const local = isLocalNode(request.node, bridge.nodeId);
  const target = local ? bridge.nodeId : request.node;
  const node = (local ? reachableNodes(status) : status.nodes).find((n) => n.nodeId === target);
  if (!node) {
    // receptor's local node always exists, so its one refusal here is the work type it lacks.
    if (local)
      return refuse(
        `unknown work type ${request.worktype} (no agent with node id ${target}, this control service's own node, is connected)`,
      );
    // A node the mesh has never seen: the unit waits Pending for it, as a receptor remote unit does.
    if (request.signwork && !bridge.hasSigningKey) return refuse(NO_KEY);
    return { ok: true, node: target, sign: request.signwork };
  }
  const workType = node.workTypes.find((w) => w.worktype === request.worktype);
  if (!workType) return refuse(`unknown work type ${request.worktype}`);
  if ((request.params.params ?? "") !== "" && !workType.allowRuntimeParams)
    return refuse("extra params provided but not allowed");
  if (local) {
    // receptor ignores signwork for local work (AWX sets it on every submit when signing is on);
    // the local agent verifies only if its work type says so, and then it needs a signature.
    if (workType.verifySignature && !bridge.hasSigningKey) return refuse(NO_KEY);
    return { ok: true, node: target, sign: workType.verifySignature };
  }
  if (request.signwork && !workType.verifySignature) return refuse("work type did not expect a signature");
  if (!request.signwork && workType.verifySignature) return refuse("could not verify signature: signature is empty");
  if (request.signwork && !bridge.hasSigningKey) return refuse(NO_KEY);
  return { ok: true, node: target, sign: request.signwork };
}

const NO_KEY = "cannot sign work: signing key is empty";
const refuse = (error: string): Admission => ({ ok: false, error });
