import { describe, expect, it } from "vitest";
import {
  PULL_MAX,
  RESULTS_WINDOW,
  lateExitDetail,
  outcome,
  placedDetail,
  planFrame,
  planNodeLeaving,
  planNodeLost,
  planNodeRemoved,
  planNodeUnreachable,
  planPull,
} from "../../broker/unit/logic.js";

/** A whole payload of `size` bytes that came with a Content-Length. */
const whole = (size: number) => ({ size, complete: true, framed: false });

describe("planPull", () => {
  const MiB = 1024 * 1024;
  it.each([
    // [next, payload size, offset, length, expected]
    [null, 16 * MiB, 0, MiB, { action: "send", end: MiB }],
    [null, 16 * MiB, 5 * MiB, MiB, { action: "send", end: 6 * MiB }], // a re-attach resumes anywhere
    [MiB, 16 * MiB, MiB, MiB, { action: "send", end: 2 * MiB }],
    [15 * MiB, 16 * MiB + 10, 15 * MiB, MiB, { action: "send", end: 16 * MiB }],
    [16 * MiB, 16 * MiB + 10, 16 * MiB, MiB, { action: "send", end: 16 * MiB + 10 }], // the last piece
    [16 * MiB, 16 * MiB, 16 * MiB, 1, { action: "send", end: 16 * MiB }], // nothing left: nothing sent
    [null, 16 * MiB, 0, 16 * MiB, "refuse"], // the attack: 16 MiB at once
    [MiB, 16 * MiB, 0, MiB, "refuse"], // pulling the same bytes again
    [MiB, 16 * MiB, 2 * MiB, MiB, "refuse"], // skipping ahead
    [null, 10, 11, 1, "refuse"], // past the end
  ] as const)("next=%s size=%i offset=%i length=%i", (next, size, offset, length, expected) => {
    const plan = planPull(next, whole(size), offset, length);
    if (expected === "refuse") expect(plan.action).toBe("refuse");
    else expect(plan).toEqual(expected);
  });

  it("each refusal says which rule the pull broke", () => {
    const MiB = 1024 * 1024;
    expect(planPull(null, whole(16 * MiB), 0, 16 * MiB)).toEqual({
      action: "refuse",
      message: `a payload pull asks for at most ${MiB} bytes, not ${16 * MiB}`,
    });
    expect(planPull(MiB, whole(16 * MiB), 0, MiB)).toEqual({
      action: "refuse",
      message: `payload pulls follow each other on a socket: the next starts at ${MiB}, not 0`,
    });
    expect(planPull(null, whole(10), 11, 1)).toEqual({
      action: "refuse",
      message: "the payload has 10 bytes; a pull at 11 is past its end",
    });
  });

  it("a socket is sent each byte at most once, however it pulls", () => {
    const size = 3 * PULL_MAX + 7;
    let next: number | null = null;
    let sent = 0;
    for (const [offset, length] of [
      [0, PULL_MAX],
      [0, PULL_MAX],
      [PULL_MAX, PULL_MAX + 1],
      [PULL_MAX, PULL_MAX],
      [2 * PULL_MAX, PULL_MAX],
      [3 * PULL_MAX, PULL_MAX],
      [size, PULL_MAX],
    ] as const) {
      const plan = planPull(next, whole(size), offset, length);
      if (plan.action === "send") {
        sent += plan.end - offset;
        next = plan.end;
      }
    }
    expect(sent).toBe(size);
  });
});

describe("planPull while a framed payload streams in", () => {
  const MiB = 1024 * 1024;
  const streaming = (size: number) => ({ size, complete: false, framed: true });
  const ended = (size: number) => ({ size, complete: true, framed: true });

  it.each([
    // [next, payload, offset, length, expected]
    [null, streaming(0), 0, MiB, { action: "send", end: MiB }], // ahead of what is in: sent as it arrives
    [MiB, streaming(10), MiB, MiB, { action: "send", end: 2 * MiB }],
    [null, streaming(10), 4 * MiB, MiB, { action: "send", end: 5 * MiB }], // a re-attach resumes anywhere
    [MiB, streaming(10), 2 * MiB, MiB, "refuse"], // still consecutive
    [null, streaming(0), 0, 2 * MiB, "refuse"], // still at most PULL_MAX
    [MiB, ended(10), MiB, MiB, { action: "send", end: 2 * MiB }], // crossed payload-end: nothing, no refusal
    [null, ended(10), 0, MiB, { action: "send", end: MiB }], // the bytes sent stop at the size (sendAvailable)
    [MiB, ended(10), 2 * MiB, MiB, "refuse"], // still consecutive after the end
    [null, whole(10), 11, 1, "refuse"], // a payload that came whole is refused past its end, as before
  ] as const)("next=%s %o offset=%i length=%i", (next, payload, offset, length, expected) => {
    const plan = planPull(next, payload, offset, length);
    if (expected === "refuse") expect(plan.action).toBe("refuse");
    else expect(plan).toEqual(expected);
  });

  it("a window of pulls made while it streamed is taken whole when the upload ended before they came", () => {
    // The agent heard `attached` with the payload still streaming and pulled four requests ahead;
    // the last bytes (1,774 in all) reached the broker before its first pull did.
    let next: number | null = null;
    for (const offset of [0, MiB, 2 * MiB, 3 * MiB]) {
      const plan = planPull(next, ended(1774), offset, MiB);
      expect(plan.action).toBe("send");
      if (plan.action === "send") next = plan.end;
    }
    expect(next).toBe(4 * MiB);
  });
});

describe("planFrame", () => {
  it.each([
    // [end, offset, length, expected]
    [0, 0, 10, { action: "append", skip: 0 }],
    [100, 100, 10, { action: "append", skip: 0 }],
    [100, 90, 20, { action: "append", skip: 10 }], // straddles the end
    [100, 99, 2, { action: "append", skip: 1 }],
    [100, 0, 101, { action: "append", skip: 100 }],
    [100, 0, 100, { action: "duplicate" }], // ends exactly at the end
    [100, 50, 10, { action: "duplicate" }],
    [100, 90, 10, { action: "duplicate" }],
    [100, 100, 0, { action: "duplicate" }], // empty frame at the end
    [0, 0, 0, { action: "duplicate" }],
    [100, 101, 10, { action: "gap", expected: 100 }],
    [0, 1, 1, { action: "gap", expected: 0 }],
    [100, 200, 0, { action: "gap", expected: 100 }],
    [RESULTS_WINDOW + 100, 100, 10, { action: "duplicate" }], // a resend from the window's edge
    [RESULTS_WINDOW + 100, 99, 10, { action: "window", oldest: 100 }], // a replay from before it
  ] as const)("end=%i offset=%i length=%i", (end, offset, length, expected) => {
    expect(planFrame(end, offset, length)).toEqual(expected);
  });

  it("appending the planned bytes always lands exactly at offset+length", () => {
    for (let end = 0; end < 12; end++) {
      for (let offset = 0; offset <= end; offset++) {
        for (let length = 0; length < 12; length++) {
          const plan = planFrame(end, offset, length);
          if (offset + length <= end) {
            expect(plan).toEqual({ action: "duplicate" });
          } else {
            expect(plan.action).toBe("append");
            if (plan.action === "append") {
              expect(plan.skip).toBeGreaterThanOrEqual(0);
              expect(plan.skip).toBeLessThan(length);
              expect(end + (length - plan.skip)).toBe(offset + length);
            }
          }
        }
      }
    }
  });
});

type Finished = Parameters<typeof outcome>[0];
const finished = (over: Partial<Finished>): Finished => ({
  type: "finished",
  exitCode: 0,
  signal: null,
  resultsSize: 0,
  canceled: false,
  ...over,
});

describe("outcome", () => {
  it("exit 0 is Succeeded with 'exit status 0'", () => {
    expect(outcome(finished({ exitCode: 0 }), false)).toEqual({ state: "Succeeded", detail: "exit status 0" });
  });

  it("exit 2 is Failed with 'exit status 2'", () => {
    expect(outcome(finished({ exitCode: 2 }), false)).toEqual({ state: "Failed", detail: "exit status 2" });
  });

  it("a signal is Failed in Go's words, 'signal: killed'", () => {
    expect(outcome(finished({ exitCode: null, signal: "SIGKILL" }), false)).toEqual({
      state: "Failed",
      detail: "signal: killed",
    });
  });

  it("a detail is Failed with that detail", () => {
    expect(outcome(finished({ exitCode: null, detail: "spawn ENOENT" }), false)).toEqual({
      state: "Failed",
      detail: "spawn ENOENT",
    });
    expect(outcome(finished({ exitCode: 0, detail: "could not start" }), false)).toEqual({
      state: "Failed",
      detail: "could not start",
    });
  });

  it("no exit code and no signal is Failed 'exit status unknown'", () => {
    expect(outcome(finished({ exitCode: null }), false)).toEqual({ state: "Failed", detail: "exit status unknown" });
  });

  it("canceled is Canceled", () => {
    expect(outcome(finished({ canceled: true, exitCode: null, signal: "SIGINT" }), false)).toEqual({
      state: "Canceled",
      detail: "canceled",
    });
    expect(outcome(finished({ canceled: true, exitCode: 1 }), true)).toEqual({ state: "Canceled", detail: "canceled" });
  });

  it("canceled keeps a detail", () => {
    expect(outcome(finished({ canceled: true, exitCode: null, detail: "canceled before it started" }), true)).toEqual({
      state: "Canceled",
      detail: "canceled before it started",
    });
  });

  it("cancelRequested with a non-zero exit is Canceled", () => {
    expect(outcome(finished({ exitCode: 130 }), true)).toEqual({ state: "Canceled", detail: "canceled" });
    expect(outcome(finished({ exitCode: null, signal: "SIGKILL" }), true)).toEqual({
      state: "Canceled",
      detail: "canceled",
    });
  });

  it("cancelRequested but the command exited 0 on its own is Succeeded", () => {
    expect(outcome(finished({ exitCode: 0 }), true)).toEqual({ state: "Succeeded", detail: "exit status 0" });
  });
});

describe("planNodeLost", () => {
  const base = { state: "Running" as const, node: "n1", targetNode: null, attachedAt: "2026-01-01T00:00:00.000Z" };

  it("fails a unit that was running on the lost node, saying so", () => {
    expect(planNodeLost(base, "n1", 31_000)).toEqual({
      action: "fail",
      detail: "node lost: no word from node n1 for 31 s",
    });
  });

  it("fails a Pending unit the node had attached to: it may have started there", () => {
    expect(planNodeLost({ ...base, state: "Pending" }, "n1", 31_000).action).toBe("fail");
  });

  it("requeues an unpinned unit the node never attached to", () => {
    expect(planNodeLost({ ...base, state: "Pending", attachedAt: null }, "n1", 31_000)).toEqual({
      action: "requeue",
      detail: "waiting for a node (no word from node n1 for 31 s)",
    });
  });

  it("requeues a pinned unit too, to wait for its node unplaced", () => {
    expect(planNodeLost({ ...base, state: "Pending", attachedAt: null, targetNode: "n1" }, "n1", 31_000)).toEqual({
      action: "requeue",
      detail: "waiting for node n1 (no word from node n1 for 31 s)",
    });
  });

  it("fails a Running unit even with no attach recorded: it has started, so it never runs twice", () => {
    expect(planNodeLost({ ...base, attachedAt: null }, "n1", 31_000).action).toBe("fail");
  });

  it.each(["Succeeded", "Failed", "Canceled", "Released"] as const)("ignores a %s unit", (state) => {
    expect(planNodeLost({ ...base, state }, "n1", 31_000)).toEqual({ action: "ignore" });
  });

  it("ignores a unit that has since moved to another node", () => {
    expect(planNodeLost({ ...base, node: "n2" }, "n1", 31_000)).toEqual({ action: "ignore" });
  });
});

describe("planNodeRemoved", () => {
  const base = { state: "Running" as const, node: "n1", targetNode: null, attachedAt: "2026-01-01T00:00:00.000Z" };

  it("fails a unit that may have started on the removed node, saying who removed it", () => {
    expect(planNodeRemoved(base, "n1")).toEqual({ action: "fail", detail: "node n1 was removed by an admin" });
  });

  it("requeues a unit the node never attached to, pinned or not, with no silence to report", () => {
    expect(planNodeRemoved({ ...base, state: "Pending", attachedAt: null }, "n1")).toEqual({
      action: "requeue",
      detail: "waiting for a node (node n1 was removed by an admin)",
    });
    expect(planNodeRemoved({ ...base, state: "Pending", attachedAt: null, targetNode: "n1" }, "n1")).toEqual({
      action: "requeue",
      detail: "waiting for node n1 (node n1 was removed by an admin)",
    });
  });

  it.each(["Succeeded", "Failed", "Canceled", "Released"] as const)("ignores a %s unit", (state) => {
    expect(planNodeRemoved({ ...base, state }, "n1")).toEqual({ action: "ignore" });
  });

  it("ignores a unit placed on another node", () => {
    expect(planNodeRemoved({ ...base, node: "n2" }, "n1")).toEqual({ action: "ignore" });
  });
});

describe("planNodeUnreachable", () => {
  const since = "2026-01-01T00:01:00.000Z";
  const base = { state: "Running" as const, node: "n1", targetNode: null, attachedAt: "2026-01-01T00:00:00.000Z" };
  const mark = { action: "mark", detail: `node n1 unreachable since ${since}; the unit may still be running there` };
  it.each([
    ["a running unit stays, marked", base, mark],
    ["an attached Pending unit may have started: marked, not requeued", { ...base, state: "Pending" as const }, mark],
    [
      "a unit the node never attached to goes back to the queue",
      { ...base, state: "Pending" as const, attachedAt: null },
      { action: "requeue", detail: "waiting for a node (node n1 unreachable)" },
    ],
    [
      "a pinned one waits for its node, unplaced",
      { ...base, state: "Pending" as const, attachedAt: null, targetNode: "n1" },
      { action: "requeue", detail: "waiting for node n1 (node n1 unreachable)" },
    ],
    ["a Running unit with no attach recorded has started: marked, not requeued", { ...base, attachedAt: null }, mark],
    ["a finished unit is left alone", { ...base, state: "Succeeded" as const }, { action: "ignore" }],
    ["a unit since moved to another node is left alone", { ...base, node: "n2" }, { action: "ignore" }],
  ] as const)("%s", (_name, doc, plan) => {
    expect(planNodeUnreachable(doc, "n1", since)).toEqual(plan);
  });

  it("the detail of a unit whose node is back says where it is", () => {
    expect(placedDetail({ state: "Running", node: "n1" })).toBe("running on n1");
    expect(placedDetail({ state: "Pending", node: "n1" })).toBe("assigned to n1");
  });

  it("a late exit keeps the verdict and says what came after", () => {
    expect(lateExitDetail("node lost: no word from node n1 for 31 s", "n1", "exit status 0", 1024)).toBe(
      "node lost: no word from node n1 for 31 s; node n1 reported later: exit status 0 (1024 more bytes of results stored)",
    );
    expect(lateExitDetail("canceled", null, "exit status 1", 0)).toBe(
      "canceled; the node reported later: exit status 1 (0 more bytes of results stored)",
    );
  });
});

describe("planNodeLeaving", () => {
  const doc = (more: Partial<Parameters<typeof planNodeLeaving>[0]> = {}) => ({
    state: "Pending" as const,
    node: "n",
    targetNode: null,
    attachedAt: null,
    ...more,
  });
  it.each([
    [
      "never attached: back to the queue",
      doc(),
      { action: "requeue", detail: "waiting for a node (node n is leaving)" },
    ],
    [
      "pinned: waits for its node",
      doc({ targetNode: "n" }),
      { action: "requeue", detail: "waiting for node n (node n is leaving)" },
    ],
    [
      "attached: refused for good",
      doc({ attachedAt: "2026-01-01T00:00:00Z" }),
      { action: "fail", detail: "node n is leaving and refused the unit" },
    ],
    ["on another node", doc({ node: "m" }), { action: "ignore" }],
    ["finished", doc({ state: "Succeeded" as never }), { action: "ignore" }],
  ])("%s", (_what, unit, plan) => expect(planNodeLeaving(unit, "n")).toEqual(plan));
});
