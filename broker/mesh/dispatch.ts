/**
 * Routing decisions, as a pure function of the queue and the nodes. A unit with a target node
 * waits for that node; any other goes to the least-loaded connected node offering its work type.
 * A node whose work dir is below its --min-free takes nothing (shared/disk.ts): its units wait for
 * it or go elsewhere instead of failing on a full disk. Units that cannot be placed stay queued
 * without blocking the ones behind them.
 */
import { type DiskSpace, isLowDisk } from "../../shared/disk.js";

export interface QueuedUnit {
  id: string;
  worktype: string;
  targetNode: string | null;
}

export interface NodeSlots {
  id: string;
  workTypes: readonly string[];
  capacity: number;
  active: number;
  /** As the node last reported it; absent from agents that do not report it. */
  disk?: DiskSpace | null;
}

export interface Placement {
  unitId: string;
  nodeId: string;
}

function load(node: NodeSlots): number {
  return node.active / node.capacity;
}

function better(a: NodeSlots, b: NodeSlots): boolean {
  if (load(a) !== load(b)) return load(a) < load(b);
  if (a.active !== b.active) return a.active < b.active;
  return a.id < b.id;
}

export function planDispatch(queue: readonly QueuedUnit[], nodes: readonly NodeSlots[]): Placement[] {
  const slots = nodes.map((n) => ({ ...n }));
  const placements: Placement[] = [];
  for (const unit of queue) {
    let best: NodeSlots | undefined;
    for (const node of slots) {
      if (node.active >= node.capacity || !node.workTypes.includes(unit.worktype) || isLowDisk(node.disk)) continue;
      if (unit.targetNode !== null && node.id !== unit.targetNode) continue;
      if (!best || better(node, best)) best = node;
    }
    if (!best) continue;
    best.active += 1;
    placements.push({ unitId: unit.id, nodeId: best.id });
  }
  return placements;
}
