import { describe, expect, it } from "vitest";
import { rerunning } from "../../agent/rerun.js";

/** A task whose runs finish when the test says so. */
function gated() {
  const runs: (() => void)[] = [];
  const task = () => new Promise<void>((resolve) => runs.push(resolve));
  return { runs, task };
}

const tick = () => new Promise((r) => setImmediate(r));

describe("rerunning", () => {
  it("runs once per call when calls do not overlap", async () => {
    let n = 0;
    const run = rerunning(async () => void n++);
    await run();
    await run();
    expect(n).toBe(2);
  });

  it("a call while it runs is not dropped: one more run follows, however many calls came", async () => {
    const { runs, task } = gated();
    const run = rerunning(task);
    const first = run();
    await run(); // returns at once: the running one goes round again
    await run();
    expect(runs).toHaveLength(1);
    runs[0]!();
    await tick();
    expect(runs).toHaveLength(2);
    runs[1]!();
    await first;
    expect(runs).toHaveLength(2);
  });

  it("never runs two at once, and stops going round once `stop` says so", async () => {
    const { runs, task } = gated();
    let stopped = false;
    const run = rerunning(task, () => stopped);
    const first = run();
    void run();
    stopped = true;
    runs[0]!();
    await first;
    expect(runs).toHaveLength(1);
  });

  it("a call after a failed run runs again", async () => {
    let n = 0;
    const run = rerunning(async () => {
      n++;
      if (n === 1) throw new Error("boom");
    });
    await expect(run()).rejects.toThrow("boom");
    await run();
    expect(n).toBe(2);
  });
});
