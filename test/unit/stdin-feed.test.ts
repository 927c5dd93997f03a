/** The FIFO stdin of a unit started early (agent/stdin-feed.ts), with real processes reading it. */
import { spawn } from "node:child_process";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { StdinFeed } from "../../agent/stdin-feed.js";

/** Runs `sh -c script` with the FIFO as its stdin, opened the way the supervisor opens it. */
function reader(path: string, script: string) {
  const child = spawn("sh", ["-c", `${script} < "${path}"`], { stdio: ["ignore", "pipe", "inherit"] });
  let out = "";
  child.stdout.on("data", (d) => (out += d));
  const exited = new Promise<number | null>((resolve) => child.once("exit", resolve));
  return { child, exited, out: () => out };
}

const fifoPath = async () => join(await mkdtemp(join(tmpdir(), "feed-")), "stdin.fifo");

describe("StdinFeed", () => {
  it("feeds what is written, in order and with backpressure, then the end", async () => {
    const feed = new StdinFeed(await fifoPath());
    await feed.create();
    const r = reader(feed.path, "wc -c");
    const piece = Buffer.alloc(1 << 20, 0x61);
    for (let i = 0; i < 5; i++) await feed.write(piece);
    await feed.end();
    expect(await r.exited).toBe(0);
    expect(r.out().trim()).toBe(String(5 << 20));
  });

  it("writes made before the command opened its stdin wait for it", async () => {
    const feed = new StdinFeed(await fifoPath());
    const written = feed.write(Buffer.from("early\n"));
    await feed.create();
    await new Promise((resolve) => setTimeout(resolve, 50));
    const r = reader(feed.path, "cat");
    await written;
    await feed.end();
    await r.exited;
    expect(r.out()).toBe("early\n");
  });

  it("a command that stops reading does not hang the feed", async () => {
    const feed = new StdinFeed(await fifoPath());
    await feed.create();
    const r = reader(feed.path, "head -c 10 >/dev/null");
    const piece = Buffer.alloc(1 << 20);
    for (let i = 0; i < 4; i++) await feed.write(piece);
    await feed.end();
    expect(await r.exited).toBe(0);
  });

  it("stop() ends the wait of a feed whose command never opened its stdin", async () => {
    const feed = new StdinFeed(await fifoPath());
    await feed.create();
    const pending = Promise.all([feed.write(Buffer.from("x")), feed.end()]);
    feed.stop();
    await expect(pending).resolves.toBeDefined();
  });
});
