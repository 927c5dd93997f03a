import { describe, expect, it } from "vitest";
import { MAX_PAUSE_MS, PAUSE_SHARE, WritePacer, turnToWrite } from "../../broker/unit/write-pacer.js";

describe("WritePacer", () => {
  it("lets the first write start at once", () => {
    expect(new WritePacer().wait(1_000)).toBe(0);
  });

  it("keeps writes off the thread for PAUSE_SHARE of the time the last one took", () => {
    expect(PAUSE_SHARE).toBe(0.5);
    const pacer = new WritePacer();
    pacer.wrote(1_000, 1_040);
    expect(pacer.wait(1_040)).toBe(20);
    expect(pacer.wait(1_050)).toBe(10);
    expect(pacer.wait(1_060)).toBe(0);
    expect(pacer.wait(2_000)).toBe(0);
  });

  it("pauses at most MAX_PAUSE_MS after a slow write", () => {
    const pacer = new WritePacer();
    pacer.wrote(0, 5_000);
    expect(pacer.wait(5_000)).toBe(MAX_PAUSE_MS);
  });

  it("takes the latest turn when writes of several objects overlap, never an earlier one", () => {
    const pacer = new WritePacer();
    pacer.wrote(0, 40);
    pacer.wrote(35, 45);
    expect(pacer.wait(45)).toBe(15);
  });

  it("counts a clock that did not move (workerd's, within one turn) as no pause", () => {
    const pacer = new WritePacer();
    pacer.wrote(500, 500);
    expect(pacer.wait(500)).toBe(0);
  });

  it("turnToWrite waits out the turn, through a timer even when none is due", async () => {
    const pacer = new WritePacer();
    let ran = false;
    const turn = turnToWrite(pacer).then(() => (ran = true));
    await Promise.resolve();
    expect(ran).toBe(false);
    await turn;
    const now = Date.now();
    pacer.wrote(now - 60, now);
    const started = performance.now();
    await turnToWrite(pacer);
    expect(performance.now() - started).toBeGreaterThanOrEqual(25);
  });
});
