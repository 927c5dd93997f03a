import { describe, expect, it } from "vitest";
import { type NodeSlots, type QueuedUnit, planDispatch } from "../../broker/mesh/dispatch.js";

const unit = (id: string, worktype = "echo", targetNode: string | null = null): QueuedUnit => ({
  id,
  worktype,
  targetNode,
});
const node = (id: string, capacity: number, active = 0, workTypes: string[] = ["echo"]): NodeSlots => ({
  id,
  workTypes,
  capacity,
  active,
});

describe("planDispatch", () => {
  it("places nothing without nodes or units", () => {
    expect(planDispatch([], [])).toEqual([]);
    expect(planDispatch([unit("u1")], [])).toEqual([]);
    expect(planDispatch([], [node("n1", 2)])).toEqual([]);
  });

  it("does not mutate its inputs", () => {
    const nodes = [node("n1", 2)];
    const queue = [unit("u1"), unit("u2")];
    const snapshot = structuredClone(nodes);
    planDispatch(queue, nodes);
    expect(nodes).toEqual(snapshot);
  });

  describe("target node", () => {
    it("is honoured even when another node is less loaded", () => {
      const nodes = [node("a", 10, 0), node("b", 10, 9)];
      expect(planDispatch([unit("u1", "echo", "b")], nodes)).toEqual([{ unitId: "u1", nodeId: "b" }]);
    });

    it("waits when the target is absent", () => {
      expect(planDispatch([unit("u1", "echo", "gone")], [node("a", 10)])).toEqual([]);
    });

    it("waits when the target is full", () => {
      expect(planDispatch([unit("u1", "echo", "b")], [node("a", 10), node("b", 2, 2)])).toEqual([]);
    });

    it("waits when the target lacks the work type", () => {
      const nodes = [node("a", 10, 0, ["other"]), node("b", 10, 0, ["echo"])];
      expect(planDispatch([unit("u1", "other", "b")], nodes)).toEqual([]);
    });

    it("fills the target up to its capacity and no further", () => {
      const queue = [unit("u1", "echo", "b"), unit("u2", "echo", "b"), unit("u3", "echo", "b")];
      expect(planDispatch(queue, [node("a", 10), node("b", 3, 1)])).toEqual([
        { unitId: "u1", nodeId: "b" },
        { unitId: "u2", nodeId: "b" },
      ]);
    });
  });

  describe("least-loaded choice", () => {
    it("prefers the lowest active/capacity ratio", () => {
      // a: 2/4 = 0.5, b: 3/10 = 0.3, c: 1/2 = 0.5
      const nodes = [node("a", 4, 2), node("b", 10, 3), node("c", 2, 1)];
      expect(planDispatch([unit("u1")], nodes)).toEqual([{ unitId: "u1", nodeId: "b" }]);
    });

    it("breaks ratio ties by fewer active units", () => {
      // a: 2/4 and b: 1/2 are both 0.5; b has fewer active units.
      expect(planDispatch([unit("u1")], [node("a", 4, 2), node("b", 2, 1)])).toEqual([{ unitId: "u1", nodeId: "b" }]);
      expect(planDispatch([unit("u1")], [node("b", 2, 1), node("a", 4, 2)])).toEqual([{ unitId: "u1", nodeId: "b" }]);
    });

    it("treats equal ratios from different fractions as equal", () => {
      // 1/3 and 2/6 are the same ratio; fewer active wins regardless of order.
      expect(planDispatch([unit("u1")], [node("a", 6, 2), node("z", 3, 1)])).toEqual([{ unitId: "u1", nodeId: "z" }]);
    });

    it("breaks full ties by node id, independent of input order", () => {
      expect(planDispatch([unit("u1")], [node("b", 4, 1), node("a", 4, 1), node("c", 4, 1)])).toEqual([
        { unitId: "u1", nodeId: "a" },
      ]);
      expect(planDispatch([unit("u1")], [node("c", 4, 1), node("b", 4, 1), node("a", 4, 1)])).toEqual([
        { unitId: "u1", nodeId: "a" },
      ]);
    });

    it("skips nodes lacking the work type", () => {
      const nodes = [node("a", 10, 0, ["other"]), node("b", 10, 9, ["echo", "other"])];
      expect(planDispatch([unit("u1", "echo")], nodes)).toEqual([{ unitId: "u1", nodeId: "b" }]);
    });

    it("skips full nodes", () => {
      expect(planDispatch([unit("u1")], [node("a", 2, 2), node("b", 5, 4)])).toEqual([{ unitId: "u1", nodeId: "b" }]);
    });

    it("skips nodes over capacity", () => {
      expect(planDispatch([unit("u1")], [node("a", 2, 3)])).toEqual([]);
    });
  });

  describe("several units in one plan", () => {
    it("counts its own placements against capacity", () => {
      const queue = ["u1", "u2", "u3", "u4", "u5"].map((id) => unit(id));
      const plan = planDispatch(queue, [node("a", 2), node("b", 1)]);
      expect(plan).toHaveLength(3);
      const perNode = (id: string) => plan.filter((p) => p.nodeId === id).length;
      expect(perNode("a")).toBe(2);
      expect(perNode("b")).toBe(1);
      expect(plan.map((p) => p.unitId)).toEqual(["u1", "u2", "u3"]);
    });

    it("spreads load as it goes", () => {
      const queue = ["u1", "u2", "u3", "u4"].map((id) => unit(id));
      // a and b tie at 0 (a wins by id), then b (0 < 1/2), then a/b tie at 1/2 with 1 active each (a by id), then b.
      expect(planDispatch(queue, [node("a", 2), node("b", 2)])).toEqual([
        { unitId: "u1", nodeId: "a" },
        { unitId: "u2", nodeId: "b" },
        { unitId: "u3", nodeId: "a" },
        { unitId: "u4", nodeId: "b" },
      ]);
    });

    it("never exceeds any node's capacity", () => {
      const queue = Array.from({ length: 50 }, (_, i) => unit(`u${i}`, i % 2 ? "echo" : "other"));
      const nodes = [node("a", 3, 1, ["echo"]), node("b", 5, 0, ["echo", "other"]), node("c", 4, 4, ["other"])];
      const plan = planDispatch(queue, nodes);
      for (const n of nodes) {
        const placed = plan.filter((p) => p.nodeId === n.id).length;
        expect(n.active + placed).toBeLessThanOrEqual(n.capacity);
      }
      expect(plan).toHaveLength(2 + 5);
      expect(new Set(plan.map((p) => p.unitId)).size).toBe(plan.length);
    });
  });

  describe("no head-of-line blocking", () => {
    it("a unit waiting for an absent target does not block later units", () => {
      const queue = [unit("u1", "echo", "gone"), unit("u2"), unit("u3")];
      expect(planDispatch(queue, [node("a", 5)])).toEqual([
        { unitId: "u2", nodeId: "a" },
        { unitId: "u3", nodeId: "a" },
      ]);
    });

    it("a unit of an unoffered work type does not block later units", () => {
      const queue = [unit("u1", "nobody"), unit("u2", "echo")];
      expect(planDispatch(queue, [node("a", 5)])).toEqual([{ unitId: "u2", nodeId: "a" }]);
    });

    it("a unit whose target is full does not block units for other nodes", () => {
      const queue = [unit("u1", "echo", "full"), unit("u2", "echo", "free"), unit("u3")];
      expect(planDispatch(queue, [node("full", 1, 1), node("free", 2)])).toEqual([
        { unitId: "u2", nodeId: "free" },
        { unitId: "u3", nodeId: "free" },
      ]);
    });
  });

  describe("low disk", () => {
    const MiB = 1024 * 1024;
    const disk = (freeMiB: number, minFreeMiB = 256) => ({ freeBytes: freeMiB * MiB, minFreeBytes: minFreeMiB * MiB });
    const withDisk = (n: NodeSlots, d: NodeSlots["disk"]): NodeSlots => ({ ...n, disk: d });

    it.each<[string, NodeSlots["disk"], string | null]>([
      ["below its --min-free: passed over for the other node", disk(12), "b"],
      ["exactly at its --min-free: takes units", disk(256), "a"],
      ["above it: takes units", disk(4096), "a"],
      ["--min-free 0 on a full disk: takes units (the agent fails them loudly if a write fails)", disk(0, 0), "a"],
      ["no report (an older agent): takes units", undefined, "a"],
      ["null report: takes units", null, "a"],
    ])("a node %s", (_name, d, expected) => {
      // a is the better choice by load, so only its disk can send the unit to b.
      const plan = planDispatch([unit("u1")], [withDisk(node("a", 4), d), node("b", 4, 2)]);
      expect(plan[0]?.nodeId ?? null).toBe(expected);
    });

    it("a unit pinned to a low-disk node waits; units behind it still go elsewhere", () => {
      const queue = [unit("u1", "echo", "a"), unit("u2")];
      expect(planDispatch(queue, [withDisk(node("a", 4), disk(1)), node("b", 4)])).toEqual([
        { unitId: "u2", nodeId: "b" },
      ]);
    });

    it("with every node low, everything waits", () => {
      expect(planDispatch([unit("u1")], [withDisk(node("a", 4), disk(1)), withDisk(node("b", 4), disk(100))])).toEqual(
        [],
      );
    });
  });

  it("keeps FIFO order among placeable units", () => {
    const queue = [unit("u5"), unit("x", "nobody"), unit("u1"), unit("u9", "echo", "a"), unit("u3")];
    const plan = planDispatch(queue, [node("a", 10), node("b", 10)]);
    expect(plan.map((p) => p.unitId)).toEqual(["u5", "u1", "u9", "u3"]);
  });

  it("earlier units win the last slots", () => {
    const queue = [unit("first"), unit("second"), unit("third")];
    expect(planDispatch(queue, [node("a", 3, 1)]).map((p) => p.unitId)).toEqual(["first", "second"]);
  });
});
