/**
 * Routing decisions, as a pure function of the queue and the nodes. A unit goes to the
 * least-loaded connected node that offers its work type, is its target node if it names one, and
 * has every tag it asks for (shared/placement.ts). A unit whose payload is still streaming in goes
 * only to a node whose work type starts on such a payload. A node takes nothing while its work dir is below
 * its --min-free (shared/disk.ts) or while it is held (`hold`: paused by an admin, leaving, or its
 * last health check failed): its units wait for it or go elsewhere. Units that cannot be placed
 * stay queued without blocking the ones behind them.
 *
 * Order: higher priority first, FIFO within a priority, and overdue units (ready for STARVE_MS)
 * before all, oldest first (queue.ts). The queue is an index of classes, so a dispatch costs
 * O(classes × nodes) plus O(placements × (classes + nodes)), whatever the number of pending units.
 */
import { type DiskSpace, isLowDisk } from "../../shared/disk.js";
import { matchesTags } from "../../shared/placement.js";
import { type QueueClass, type QueuedUnit, type Rank, ReadyQueue, outranks } from "./queue.js";

export type { QueuedUnit };

export interface NodeSlots {
  id: string;
  workTypes: readonly string[];
  capacity: number;
  active: number;
  /** As the node last reported it; absent from agents that do not report it. */
  disk?: DiskSpace | null;
  /** The node's advertised tags; absent: none. */
  tags?: Readonly<Record<string, string>>;
  /** Why the node takes no new units now (paused, leaving, failed check); absent or null: it takes them. */
  hold?: string | null;
  /** Its work types that start on a payload still streaming in (WorkTypeAd.streamingPayload). */
  streamingWorkTypes?: readonly string[];
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

/** Whether `node` may take a unit of `cls` now. */
export function fits(
  node: NodeSlots,
  cls: Pick<QueueClass, "worktype" | "targetNode" | "tags"> & { streaming?: boolean },
): boolean {
  if (node.active >= node.capacity || node.hold || isLowDisk(node.disk)) return false;
  if (!node.workTypes.includes(cls.worktype)) return false;
  if (cls.streaming && !node.streamingWorkTypes?.includes(cls.worktype)) return false;
  if (cls.targetNode !== null && node.id !== cls.targetNode) return false;
  return matchesTags(cls.tags, node.tags ?? {});
}

function bestNode(nodes: readonly NodeSlots[], cls: QueueClass): NodeSlots | undefined {
  let best: NodeSlots | undefined;
  for (const node of nodes) if (fits(node, cls) && (!best || better(node, best))) best = node;
  return best;
}

/** Placements for a queue given as a list (tests, small queues): indexes it, then planQueue. */
export function planDispatch(queue: readonly QueuedUnit[], nodes: readonly NodeSlots[], now = 0): Placement[] {
  const index = new ReadyQueue();
  for (const unit of queue) index.add(unit);
  return planQueue(index, nodes, now);
}

/** Placements for the ready-queue index; reads it, never changes it. */
export function planQueue(queue: ReadyQueue, nodes: readonly NodeSlots[], now: number): Placement[] {
  const slots = nodes.map((n) => ({ ...n }));
  if (!slots.some((n) => n.active < n.capacity && !n.hold)) return [];
  // Classes some node fits now, each with a cursor over its lanes (a copy: the index is not touched).
  const live = queue
    .classList()
    .filter((cls) => slots.some((n) => fits(n, cls)))
    .map((cls) => ({ cls, view: cls.view() }));
  const placements: Placement[] = [];
  while (live.length > 0) {
    let pick = -1;
    let pickRank: Rank | null = null;
    for (let i = 0; i < live.length; i++) {
      const rank = live[i]!.view.head(now);
      if (rank && (!pickRank || outranks(rank, pickRank))) {
        pick = i;
        pickRank = rank;
      }
    }
    if (pick < 0 || !pickRank) break;
    const chosen = live[pick]!;
    const node = bestNode(slots, chosen.cls);
    if (!node) {
      live.splice(pick, 1);
      continue;
    }
    node.active += 1;
    chosen.view.take(pickRank);
    placements.push({ unitId: pickRank.entry.unit.id, nodeId: node.id });
  }
  return placements;
}
