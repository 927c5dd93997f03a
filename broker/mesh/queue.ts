/**
 * The ready queue as an index, so that a dispatch never walks every pending unit.
 *
 * Units are grouped in classes of what they ask for: (work type, target node, tag selector, and
 * whether their payload is still streaming in, which only some nodes take). All
 * units of a class fit exactly the same nodes, so if a class's first unit cannot be placed, none of
 * it can, and the class is skipped whole. Inside a class, one lane per priority, each FIFO by
 * submit time. A dispatch looks at the classes (few) and at the head of their lanes, not at units.
 *
 * Starvation bound: a unit ready for STARVE_MS is *overdue*; overdue units go before every
 * priority, oldest first. So a unit of any priority waits at most STARVE_MS behind higher
 * priorities once a node that fits it has a free slot; after that it is served FIFO among the
 * overdue.
 */
import type { TagSelector } from "../../shared/placement.js";

/** How long a lower priority may be passed over before it is served in submit order. */
export const STARVE_MS = 10 * 60_000;

export interface QueuedUnit {
  id: string;
  worktype: string;
  targetNode: string | null;
  /** Tags the node must have (shared/placement.ts); absent: any node. */
  tags?: TagSelector;
  /** Higher first; absent: 0. */
  priority?: number;
  /** Submit time (epoch ms), the FIFO order; absent: the order units were added. */
  createdAt?: number;
  /** Its payload is still arriving: only a node whose work type takes a streaming payload may run it. */
  streaming?: boolean;
}

export interface Entry {
  unit: QueuedUnit;
  createdAt: number;
  seq: number;
}

const before = (a: Entry, b: Entry) => a.createdAt < b.createdAt || (a.createdAt === b.createdAt && a.seq < b.seq);

/** One priority's units in (createdAt, seq) order: a Map keeps insertion order, `tail` its last entry. */
class Lane {
  readonly entries = new Map<string, Entry>();
  private tail: Entry | null = null;

  add(entry: Entry): void {
    const last = this.tail;
    this.entries.set(entry.unit.id, entry);
    if (!last || !before(entry, last)) {
      this.tail = entry;
      return;
    }
    // A requeued unit goes back in submit order, not at the tail (rare: one lane sorted).
    const sorted = [...this.entries.values()].sort((a, b) => (before(a, b) ? -1 : 1));
    this.entries.clear();
    for (const e of sorted) this.entries.set(e.unit.id, e);
  }

  delete(id: string): void {
    if (!this.entries.delete(id) || this.tail?.unit.id !== id) return;
    this.tail = null;
    for (const e of this.entries.values()) this.tail = e;
  }

  head(): Entry | undefined {
    return this.entries.values().next().value;
  }
}

/** One class: its units in one FIFO lane per priority. */
export class QueueClass {
  private readonly lanes = new Map<number, Lane>();

  constructor(
    readonly worktype: string,
    readonly targetNode: string | null,
    readonly tags: TagSelector,
    readonly streaming = false,
  ) {}

  get empty(): boolean {
    return this.lanes.size === 0;
  }

  add(entry: Entry, priority: number): void {
    const lane = this.lanes.get(priority) ?? new Lane();
    this.lanes.set(priority, lane);
    lane.add(entry);
  }

  remove(id: string, priority: number): void {
    const lane = this.lanes.get(priority);
    if (!lane) return;
    lane.delete(id);
    if (lane.entries.size === 0) this.lanes.delete(priority);
  }

  /** A cursor over the lanes for one dispatch, which it reads without changing the class. */
  view(): ClassView {
    return new ClassView(this.lanes);
  }

  counts(): [priority: number, count: number][] {
    return [...this.lanes].map(([priority, lane]) => [priority, lane.entries.size]);
  }
}

/** A class's lanes as one dispatch sees them: their heads, minus the units it has placed already. */
export class ClassView {
  private readonly cursors = new Map<number, Iterator<Entry>>();
  private readonly heads = new Map<number, Entry | undefined>();

  constructor(lanes: ReadonlyMap<number, Lane>) {
    for (const [priority, lane] of lanes) {
      const cursor = lane.entries.values();
      this.cursors.set(priority, cursor);
      this.heads.set(priority, cursor.next().value);
    }
  }

  /** The unit the class would place next at `now`, with its rank among classes. */
  head(now: number): Rank | null {
    let best: Rank | null = null;
    for (const [priority, entry] of this.heads) {
      if (!entry) continue;
      const rank: Rank = { overdue: now - entry.createdAt >= STARVE_MS, priority, entry };
      if (!best || outranks(rank, best)) best = rank;
    }
    return best;
  }

  /** The head `rank` names was placed: its lane moves on. */
  take(rank: Rank): void {
    this.heads.set(rank.priority, this.cursors.get(rank.priority)?.next().value);
  }
}

export interface Rank {
  overdue: boolean;
  priority: number;
  entry: Entry;
}

/** Overdue first (oldest first), then higher priority, then older. */
export function outranks(a: Rank, b: Rank): boolean {
  if (a.overdue !== b.overdue) return a.overdue;
  if (!a.overdue && a.priority !== b.priority) return a.priority > b.priority;
  return before(a.entry, b.entry);
}

/**
 * The index as a cache of a table: built by `load` on first use (each object start), then kept in
 * step one unit at a time by `sync`, which reads the unit only once the index exists.
 */
export class CachedReadyQueue {
  private index: ReadyQueue | null = null;

  constructor(private readonly load: () => Iterable<QueuedUnit>) {}

  get(): ReadyQueue {
    if (this.index) return this.index;
    const index = new ReadyQueue();
    for (const unit of this.load()) index.add(unit);
    this.index = index;
    return index;
  }

  /** `now`: the unit as the table holds it, if it is queued; null if not. */
  sync(id: string, now: () => QueuedUnit | null): void {
    if (!this.index) return;
    const unit = now();
    if (!unit) this.index.remove(id);
    // Already queued: left where it is (what decides its place never changes), unless its payload
    // became whole while it waited, which moves it to the class every node of its type may take.
    else if (!this.index.has(id) || this.index.streamingOf(id) !== (unit.streaming === true)) this.index.add(unit);
  }
}

export class ReadyQueue {
  private readonly classes = new Map<string, QueueClass>();
  private readonly where = new Map<string, { key: string; priority: number; streaming: boolean }>();
  private seq = 0;

  get size(): number {
    return this.where.size;
  }

  has(id: string): boolean {
    return this.where.has(id);
  }

  add(unit: QueuedUnit): void {
    this.remove(unit.id);
    const tags = unit.tags ?? [];
    const streaming = unit.streaming === true;
    const key = JSON.stringify([unit.worktype, unit.targetNode, tags, streaming]);
    const cls = this.classes.get(key) ?? new QueueClass(unit.worktype, unit.targetNode, tags, streaming);
    this.classes.set(key, cls);
    const priority = unit.priority ?? 0;
    cls.add({ unit, createdAt: unit.createdAt ?? 0, seq: this.seq++ }, priority);
    this.where.set(unit.id, { key, priority, streaming });
  }

  /** Whether the queued unit `id` is in a streaming class (false if not queued). */
  streamingOf(id: string): boolean {
    return this.where.get(id)?.streaming === true;
  }

  remove(id: string): void {
    const at = this.where.get(id);
    if (!at) return;
    this.where.delete(id);
    const cls = this.classes.get(at.key);
    if (!cls) return;
    cls.remove(id, at.priority);
    if (cls.empty) this.classes.delete(at.key);
  }

  /** The non-empty classes; a dispatch reads these, never the units behind their heads. */
  classList(): QueueClass[] {
    return [...this.classes.values()];
  }

  /** Queue depth by work type and priority (metrics). */
  depth(): { worktype: string; priority: number; count: number }[] {
    const sums = new Map<string, { worktype: string; priority: number; count: number }>();
    for (const cls of this.classes.values()) {
      for (const [priority, count] of cls.counts()) {
        const key = `${cls.worktype}\n${priority}`;
        const row = sums.get(key) ?? { worktype: cls.worktype, priority, count: 0 };
        row.count += count;
        sums.set(key, row);
      }
    }
    return [...sums.values()].sort((a, b) =>
      a.worktype < b.worktype ? -1 : a.worktype > b.worktype ? 1 : b.priority - a.priority,
    );
  }
}
