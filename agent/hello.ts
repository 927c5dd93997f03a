/**
 * What the agent says of itself on every new control link: its node id, the work types it offers
 * and how it takes them (signed, with runtime params, inline start, a streamed payload), its
 * capacity, tags and versions, the units it still holds (so the broker does not fail them) and its
 * disk, when it has sampled one.
 */
import type { DiskSpace } from "../shared/disk.js";
import { type HelloMessage, PROTOCOL_VERSION, type Versions } from "../shared/protocol.js";
import { type WorkCommand, streamsPayload } from "./config.js";

export interface NodeSelf {
  nodeId: string;
  workCommands: readonly WorkCommand[];
  capacity: number;
  tags: Record<string, string>;
  versions: Versions;
}

export function helloMessage(node: NodeSelf, units: string[], disk: DiskSpace | null): HelloMessage {
  return {
    type: "hello",
    protocol: PROTOCOL_VERSION,
    nodeId: node.nodeId,
    workTypes: node.workCommands.map((w) => ({
      worktype: w.worktype,
      verifySignature: w.verifysignature,
      allowRuntimeParams: w.allowruntimeparams,
      ...(w.inlinestart ? { inlineStart: true } : {}),
      ...(streamsPayload(w) ? { streamingPayload: true } : {}),
    })),
    capacity: node.capacity,
    tags: node.tags,
    versions: node.versions,
    units,
    ...(disk ? { disk } : {}),
  };
}
