/** Dispatch with tag selectors, priorities, held nodes, and the ready-queue index (queue.ts). */
import { describe, expect, it } from "vitest";
import { type NodeSlots, type QueuedUnit, planDispatch, planQueue } from "../../broker/mesh/dispatch.js";
import { type KnownNode, admitTags, leftCleanly, nodeHold } from "../../broker/mesh/fleet.js";
import { CachedReadyQueue, ReadyQueue, STARVE_MS } from "../../broker/mesh/queue.js";
import { matchesTags, parsePriority, parseTagSelector } from "../../shared/placement.js";

const unit = (id: string, fields: Partial<QueuedUnit> = {}): QueuedUnit => ({
  id,
  worktype: "echo",
  targetNode: null,
  ...fields,
});
const node = (id: string, fields: Partial<NodeSlots> = {}): NodeSlots => ({
  id,
  workTypes: ["echo"],
  capacity: 1,
  active: 0,
  ...fields,
});

describe("parseTagSelector", () => {
  it.each([
    [
      ["zone=eu", "gpu"],
      ["gpu", "zone=eu"],
    ],
    [["gpu", "gpu=a100"], ["gpu=a100"]],
    [["gpu=a100", "gpu"], ["gpu=a100"]],
    [["a=1", "a=1"], ["a=1"]],
    [["k="], ["k="]],
    [[], []],
  ])("%j → %j", (items, normal) => {
    expect(parseTagSelector(items)).toEqual({ ok: true, value: normal });
  });

  it.each([
    [["=v"]],
    [["a=1", "a=2"]],
    [["bad key"]],
    [[`k=${"x".repeat(300)}`]],
    [Array.from({ length: 17 }, (_, i) => `k${i}`)],
  ])("refuses %j", (items) => {
    expect(parseTagSelector(items)).toMatchObject({ ok: false, error: { code: "bad_request" } });
  });
});

describe("matchesTags", () => {
  const tags = { zone: "eu", gpu: "a100", empty: "" };
  it.each([
    [[], true],
    [["zone=eu"], true],
    [["zone=us"], false],
    [["gpu"], true],
    [["ssd"], false],
    [["zone=eu", "gpu=a100"], true],
    [["zone=eu", "gpu=h100"], false],
    [["empty"], true],
    [["empty="], true],
    [["constructor"], false],
  ])("%j on zone=eu,gpu=a100 → %s", (selector, expected) => {
    expect(matchesTags(selector, tags)).toBe(expected);
  });
});

describe("parsePriority", () => {
  it.each([
    [undefined, 0],
    ["", 0],
    ["5", 5],
    ["-3", -3],
    ["1000", 1000],
  ])("%j → %d", (raw, value) => expect(parsePriority(raw)).toEqual({ ok: true, value }));
  it.each(["1001", "-1001", "1.5", "x", "99999"])("refuses %j", (raw) => expect(parsePriority(raw).ok).toBe(false));
});

describe("planDispatch with tags", () => {
  const eu = node("eu", { tags: { zone: "eu" }, capacity: 5 });
  const us = node("us", { tags: { zone: "us", gpu: "a100" }, capacity: 5 });
  it.each([
    ["k=v picks the node with it", unit("u", { tags: ["zone=us"] }), "us"],
    ["k alone picks the node that has k", unit("u", { tags: ["gpu"] }), "us"],
    ["all items must match", unit("u", { tags: ["gpu", "zone=eu"] }), null],
    ["no tags: least loaded (ties by id)", unit("u"), "eu"],
    ["tags and a target node combine", unit("u", { tags: ["zone=eu"], targetNode: "us" }), null],
    ["tags and a matching target node", unit("u", { tags: ["zone=us"], targetNode: "us" }), "us"],
  ])("%s", (_what, queued, expected) => {
    const placed = planDispatch([queued], [eu, us]);
    expect(placed).toEqual(expected === null ? [] : [{ unitId: "u", nodeId: expected }]);
  });

  it("a unit no node matches does not block the ones behind it", () => {
    const queue = [unit("a", { tags: ["ssd"] }), unit("b", { tags: ["zone=eu"] })];
    expect(planDispatch(queue, [eu, us])).toEqual([{ unitId: "b", nodeId: "eu" }]);
  });

  it("fills only the nodes that match, up to their capacity", () => {
    const queue = ["1", "2", "3"].map((id) => unit(id, { tags: ["zone=eu"] }));
    expect(planDispatch(queue, [node("eu", { tags: { zone: "eu" }, capacity: 2 }), us])).toEqual([
      { unitId: "1", nodeId: "eu" },
      { unitId: "2", nodeId: "eu" },
    ]);
  });
});

describe("planDispatch with held nodes", () => {
  it.each(["paused by an admin", "leaving", "health check failed"])("a node held (%s) takes nothing", (hold) => {
    expect(planDispatch([unit("u")], [node("a", { hold })])).toEqual([]);
    expect(planDispatch([unit("u")], [node("a", { hold }), node("b", { active: 0, capacity: 9 })])).toEqual([
      { unitId: "u", nodeId: "b" },
    ]);
  });
});

describe("planDispatch with priorities", () => {
  const one = [node("n", { capacity: 1 })];
  it.each([
    [
      "higher priority first",
      [unit("lo", { priority: 0, createdAt: STARVE_MS }), unit("hi", { priority: 5, createdAt: STARVE_MS + 1 })],
      "hi",
    ],
    [
      "FIFO within a priority",
      [unit("new", { priority: 1, createdAt: 9 }), unit("old", { priority: 1, createdAt: 3 })],
      "old",
    ],
    [
      "negative priority last",
      [unit("neg", { priority: -1, createdAt: STARVE_MS }), unit("zero", { createdAt: STARVE_MS + 1 })],
      "zero",
    ],
    [
      "an overdue unit goes before any priority",
      [unit("hi", { priority: 1000, createdAt: STARVE_MS }), unit("starved", { priority: -5, createdAt: 0 })],
      "starved",
    ],
    [
      "overdue units among themselves: oldest first, whatever their priority",
      [unit("a", { priority: 9, createdAt: 5 }), unit("b", { priority: 0, createdAt: 4 })],
      "b",
    ],
  ])("%s", (_what, queue, first) => {
    expect(planDispatch(queue, one, STARVE_MS + 10)[0]?.unitId).toBe(first);
  });

  it("orders across classes (work types, targets, tags) by priority, then age", () => {
    const nodes = [node("n", { capacity: 4, workTypes: ["echo", "sh"], tags: { zone: "eu" } })];
    const queue = [
      unit("a", { worktype: "sh", priority: 1, createdAt: 4 }),
      unit("b", { tags: ["zone=eu"], priority: 2, createdAt: 3 }),
      unit("c", { targetNode: "n", priority: 1, createdAt: 2 }),
      unit("d", { priority: 0, createdAt: 1 }),
    ];
    expect(planDispatch(queue, nodes, 100).map((p) => p.unitId)).toEqual(["b", "c", "a", "d"]);
  });

  it("a requeued unit goes back in submit order", () => {
    const queue = new ReadyQueue();
    for (const [id, createdAt] of [
      ["b", 2],
      ["c", 3],
    ] as const)
      queue.add(unit(id, { createdAt }));
    queue.add(unit("a", { createdAt: 1 }));
    expect(planQueue(queue, [node("n", { capacity: 3 })], 10).map((p) => p.unitId)).toEqual(["a", "b", "c"]);
  });
});

describe("ReadyQueue", () => {
  it("counts depth by work type and priority, and forgets removed units", () => {
    const queue = new ReadyQueue();
    queue.add(unit("1", { priority: 1 }));
    queue.add(unit("2", { priority: 1, tags: ["x"] }));
    queue.add(unit("3", { worktype: "sh" }));
    queue.add(unit("3", { worktype: "sh" }));
    expect(queue.size).toBe(3);
    expect(queue.depth()).toEqual([
      { worktype: "echo", priority: 1, count: 2 },
      { worktype: "sh", priority: 0, count: 1 },
    ]);
    queue.remove("1");
    queue.remove("3");
    queue.remove("nope");
    expect(queue.depth()).toEqual([{ worktype: "echo", priority: 1, count: 1 }]);
    expect(queue.classList()).toHaveLength(1);
  });

  it("planQueue does not change the index", () => {
    const queue = new ReadyQueue();
    queue.add(unit("1"));
    expect(planQueue(queue, [node("n")], 0)).toHaveLength(1);
    expect(queue.size).toBe(1);
    expect(planQueue(queue, [node("n")], 0)).toHaveLength(1);
  });

  // Not a speed assertion: the figure goes to the log (docs/benchmarks.md quotes it).
  it("measures dispatch cost at 10,000 pending units", () => {
    const queue = new ReadyQueue();
    const worktypes = ["ansible-runner", "sh", "echo", "cat"];
    for (let i = 0; i < 10_000; i++) {
      queue.add(
        unit(`u${i}`, {
          worktype: worktypes[i % 4]!,
          priority: i % 3,
          tags: i % 5 === 0 ? ["zone=eu"] : [],
          createdAt: i,
          targetNode: i % 50 === 0 ? "n7" : null,
        }),
      );
    }
    const nodes = Array.from({ length: 200 }, (_, i) =>
      node(`n${i}`, { capacity: 4, active: 4, workTypes: worktypes, tags: { zone: i % 2 ? "eu" : "us" } }),
    );
    const time = (free: number) => {
      const withFree = nodes.map((n, i) => (i < free ? { ...n, active: 3 } : n));
      const rounds = 200;
      const start = performance.now();
      let placed = 0;
      for (let r = 0; r < rounds; r++) placed = planQueue(queue, withFree, 20_000).length;
      return { perDispatchMs: (performance.now() - start) / rounds, placed };
    };
    const full = time(0);
    const one = time(1);
    const many = time(200);
    // Built twice, the second timed: the first pays for the JIT, as an object's first dispatch would.
    let buildMs = 0;
    for (let round = 0; round < 2; round++) {
      const build = performance.now();
      const fresh = new ReadyQueue();
      for (let i = 0; i < 10_000; i++) fresh.add(unit(`v${i}`, { createdAt: i, priority: i % 3 }));
      buildMs = performance.now() - build;
    }
    console.log(
      `dispatch at 10,000 pending, 200 nodes, ${queue.classList().length} classes: ` +
        `all full ${full.perDispatchMs.toFixed(3)} ms; one free slot ${one.perDispatchMs.toFixed(3)} ms (${one.placed} placed); ` +
        `200 free slots ${many.perDispatchMs.toFixed(3)} ms (${many.placed} placed); index build ${buildMs.toFixed(1)} ms`,
    );
    expect(one.placed).toBe(1);
    expect(many.placed).toBe(200);
  });
});

describe("admitTags and nodeHold (fleet.ts)", () => {
  const nodes: KnownNode[] = [
    { id: "eu-1", workTypes: new Set(["sh"]), tags: { zone: "eu" } },
    { id: "us-1", workTypes: new Set(["sh", "ansible-runner"]), tags: { zone: "us", gpu: "a100" } },
  ];
  const submit = (
    tags: string[],
    more: Partial<{ worktype: string; targetNode: string | null; ttlMs: number | null }> = {},
  ) => ({
    mesh: "m",
    worktype: "sh",
    targetNode: null,
    ttlMs: null,
    tags,
    ...more,
  });
  it.each([
    ["no tags", submit([]), true],
    ["a node has them", submit(["zone=eu"]), true],
    ["a node has the key", submit(["gpu"]), true],
    ["no node has them", submit(["zone=mars"]), false],
    ["the node with them lacks the work type", submit(["zone=eu"], { worktype: "ansible-runner" }), false],
    ["the target lacks them", submit(["zone=eu"], { targetNode: "us-1" }), false],
    ["the target has them", submit(["gpu=a100"], { targetNode: "us-1" }), true],
    ["a ttl waits for such a node", submit(["zone=mars"], { ttlMs: 60_000 }), true],
  ])("%s", (_what, unit, admitted) => {
    const result = admitTags(unit, nodes);
    expect(result.ok).toBe(admitted);
    if (!result.ok) expect(result.error.code).toBe("no_matching_node");
  });

  it.each([
    [{ paused: false, leaving: false, unhealthy: null }, null],
    [{ paused: true, leaving: false, unhealthy: null }, "paused"],
    [{ paused: true, leaving: true, unhealthy: null }, "leaving"],
    [
      { paused: false, leaving: false, unhealthy: "ansible-runner: --version: not found on PATH" },
      "health check failed: ansible-runner: --version: not found on PATH",
    ],
  ])("nodeHold(%j) = %j", (flags, hold) => expect(nodeHold(flags)).toBe(hold));

  it("says what the target node lacks", () => {
    const result = admitTags(submit(["zone=eu"], { targetNode: "us-1" }), nodes);
    expect(result.ok ? null : result.error.message).toMatch(/^node us-1 lacks tags zone=eu;/);
  });

  // An agent killed while leaving with a unit on it crashed: not shown as left (it is judged by its silence).
  it.each([
    ["went after its units", { connected: false, leftAt: 1, activeUnits: 0, outageSince: null }, true],
    ["still connected", { connected: true, leftAt: 1, activeUnits: 0, outageSince: null }, false],
    ["never said it was leaving", { connected: false, leftAt: null, activeUnits: 0, outageSince: null }, false],
    ["went with a unit on it", { connected: false, leftAt: 1, activeUnits: 1, outageSince: null }, false],
    ["its units failed as lost since", { connected: false, leftAt: 1, activeUnits: 0, outageSince: 5 }, false],
  ])("leftCleanly: %s", (_what, node, left) => expect(leftCleanly(node)).toBe(left));
});

describe("CachedReadyQueue", () => {
  it("loads once on first use, syncs nothing before, and keeps a queued unit's place", () => {
    let loads = 0;
    let reads = 0;
    const cache = new CachedReadyQueue(() => {
      loads += 1;
      return [unit("a", { createdAt: 1 }), unit("b", { createdAt: 2 })];
    });
    cache.sync("x", () => {
      reads += 1;
      return unit("x");
    });
    expect(reads).toBe(0);
    expect(cache.get().size).toBe(2);
    expect(cache.get().size).toBe(2);
    expect(loads).toBe(1);
    cache.sync("a", () => unit("a", { createdAt: 1 }));
    cache.sync("c", () => unit("c", { createdAt: 0 }));
    cache.sync("b", () => null);
    expect(planQueue(cache.get(), [node("n", { capacity: 5 })], 10).map((p) => p.unitId)).toEqual(["c", "a"]);
  });
});

describe("units whose payload is still streaming in", () => {
  const streamer = (id: string, fields: Partial<NodeSlots> = {}) =>
    node(id, { streamingWorkTypes: ["echo"], ...fields });

  it("go only to a node whose work type takes a streaming payload", () => {
    const queue = [unit("s", { streaming: true, createdAt: 1 }), unit("w", { createdAt: 2 })];
    // The plain node is less loaded, yet only the streaming one may take s.
    expect(planDispatch(queue, [node("plain", { capacity: 2 }), streamer("fast", { capacity: 2, active: 1 })])).toEqual(
      [
        { unitId: "s", nodeId: "fast" },
        { unitId: "w", nodeId: "plain" },
      ],
    );
    expect(planDispatch([unit("s", { streaming: true })], [node("plain", { capacity: 5 })])).toEqual([]);
    // Streaming for another work type is not enough.
    expect(
      planDispatch(
        [unit("s", { streaming: true })],
        [node("other", { streamingWorkTypes: ["cat"], workTypes: ["echo", "cat"] })],
      ),
    ).toEqual([]);
  });

  it("a streaming node takes whole payloads too", () => {
    expect(planDispatch([unit("w")], [streamer("fast")])).toEqual([{ unitId: "w", nodeId: "fast" }]);
  });

  it("a queued unit whose payload became whole moves to the class every node may take", () => {
    const cache = new CachedReadyQueue(() => [unit("s", { streaming: true, createdAt: 1 })]);
    expect(planQueue(cache.get(), [node("plain")], 10)).toEqual([]);
    cache.sync("s", () => unit("s", { createdAt: 1 }));
    expect(cache.get().size).toBe(1);
    expect(planQueue(cache.get(), [node("plain")], 10)).toEqual([{ unitId: "s", nodeId: "plain" }]);
  });
});
