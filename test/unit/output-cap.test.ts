import { describe, expect, it } from "vitest";
import { type CapPlan, headEnd, marker, planCap } from "../../shared/output-cap.js";

const enc = new TextEncoder();
const dec = new TextDecoder();

/** The source in chunks of `size` bytes, to cross line boundaries anywhere. */
const chunks = (bytes: Uint8Array, size: number) =>
  async function* () {
    for (let i = 0; i < bytes.length; i += size) yield bytes.subarray(i, i + size);
  };

function apply(bytes: Uint8Array, head: number, plan: CapPlan): string {
  return (
    dec.decode(bytes.subarray(0, head)) +
    plan.pieces.map((p) => ("text" in p ? dec.decode(p.text) : dec.decode(bytes.subarray(p.from, p.to)))).join("")
  );
}

async function cap(text: string, limit: number, chunk = 7): Promise<{ out: string; plan: CapPlan }> {
  const bytes = enc.encode(text);
  const head = headEnd(bytes, limit);
  const plan = await planCap(chunks(bytes, chunk), bytes.length, head, limit);
  return { out: apply(bytes, head, plan), plan };
}

/** What `ansible-runner process` does with a stream (streaming.py Processor.run), as far as parsing goes. */
function processLike(stream: string): {
  statuses: string[];
  counters: number[];
  stdout: string[];
  zip: string | null;
  eof: boolean;
} {
  const seen = {
    statuses: [] as string[],
    counters: [] as number[],
    stdout: [] as string[],
    zip: null as string | null,
    eof: false,
  };
  let rest = stream;
  while (rest.length > 0) {
    const nl = rest.indexOf("\n");
    const line = nl < 0 ? rest : rest.slice(0, nl + 1);
    rest = rest.slice(line.length);
    const data = JSON.parse(line) as Record<string, unknown>;
    if ("status" in data) seen.statuses.push(String(data.status));
    else if ("zipfile" in data) {
      const length = 4 * Math.ceil(Number(data.zipfile) / 3);
      seen.zip = rest.slice(0, length);
      rest = rest.slice(length);
    } else if ("eof" in data) {
      seen.eof = true;
      break;
    } else {
      // event_callback: counter and uuid are required (job_events/{counter}-{uuid}.json).
      if (typeof data.counter !== "number" || typeof data.uuid !== "string")
        throw new Error(`event without counter/uuid: ${line}`);
      seen.counters.push(data.counter);
      seen.stdout.push(String(data.stdout ?? ""));
    }
  }
  return seen;
}

function runnerStream(events: number, stdoutBytes = 40): string {
  const zip = Buffer.from("PK\u0003\u0004 not really a zip, but base64 all the same").toString("base64");
  const lines = [JSON.stringify({ status: "starting", runner_ident: "x", command: ["ansible-playbook"], env: {} })];
  for (let i = 1; i <= events; i++) {
    lines.push(
      JSON.stringify({
        uuid: `u-${i}`,
        counter: i,
        event: "runner_on_ok",
        stdout: `line ${i} ${"x".repeat(stdoutBytes)}`,
      }),
    );
    if (i === Math.floor(events / 2)) lines.push(JSON.stringify({ status: "running" }));
  }
  lines.push(JSON.stringify({ status: "successful", runner_ident: "x" }));
  const raw = Buffer.from("PK\u0003\u0004 not really a zip, but base64 all the same");
  return `${lines.join("\n")}\n${JSON.stringify({ zipfile: raw.length })}\n${zip}{"eof": true}`;
}

describe("output cap: plain lines", () => {
  it("leaves output under the cap as it is", async () => {
    const text = "one\ntwo\nthree\n";
    const { out, plan } = await cap(text, 1000);
    expect(out).toBe(text);
    expect(plan.cut).toBeNull();
  });

  it("keeps the head and the tail with a marker between, cutting whole lines only", async () => {
    const text = Array.from({ length: 100 }, (_, i) => `line ${String(i).padStart(3, "0")}\n`).join("");
    const { out, plan } = await cap(text, 100);
    const lines = out.split("\n");
    expect(lines.slice(0, 5)).toEqual(["line 000", "line 001", "line 002", "line 003", "line 004"]);
    expect(lines.at(-2)).toBe("line 099");
    expect(out).toMatch(
      /\n\[mesh-agent: output cap: \d+ lines \(\d+ bytes\) cut here; the head and the tail are kept\]\n/,
    );
    expect(plan.cut?.bytes).toBe(text.length - (out.length - dec.decode(marker(false, plan.cut!)).length));
    expect(out.length).toBeLessThan(100 + 100);
  });

  it.each([1, 3, 64, 4096])("plans the same whatever the chunk size (%d)", async (chunk) => {
    const text = Array.from({ length: 50 }, (_, i) => `${i}${"y".repeat(i % 13)}\n`).join("");
    expect((await cap(text, 120, chunk)).out).toBe((await cap(text, 120, 5)).out);
  });

  it("a last line without a newline is kept in the tail", async () => {
    const text = `${"a\n".repeat(100)}end`;
    const { out } = await cap(text, 40);
    expect(out.endsWith("a\nend")).toBe(true);
  });
});

describe("output cap: ansible-runner worker streams", () => {
  it("keeps status lines, the zipfile and eof whole, cuts events, and stays readable by ansible-runner process", async () => {
    const text = runnerStream(400);
    const { out, plan } = await cap(text, 8 * 1024);
    expect(plan.cut?.lines).toBeGreaterThan(200);
    expect(out.length).toBeLessThan(8 * 1024 + 2048);
    const read = processLike(out);
    expect(read.statuses).toEqual(["starting", "running", "successful"]);
    expect(read.eof).toBe(true);
    expect(read.zip).toBe(processLike(text).zip);
    expect(read.counters[0]).toBe(1);
    expect(read.counters.at(-1)).toBe(400);
    const note = read.stdout.find((s) => s.startsWith("[mesh-agent: output cap:"));
    expect(note).toMatch(/^\[mesh-agent: output cap: \d+ events \(\d+ bytes\) cut here/);
    // Counters stay unique: the marker takes the first cut event's.
    expect(new Set(read.counters).size).toBe(read.counters.length);
  });

  it("plans the same from a source that reuses one Buffer for every chunk, as the agent's reader does", async () => {
    const bytes = enc.encode(runnerStream(400));
    const head = headEnd(bytes, 8 * 1024);
    const reused = Buffer.alloc(7);
    // Each chunk overwrites the last: a line kept across chunks must have been copied.
    const reusing = async function* () {
      for (let i = 0; i < bytes.length; i += reused.length) {
        const n = Math.min(reused.length, bytes.length - i);
        reused.set(bytes.subarray(i, i + n));
        yield reused.subarray(0, n);
      }
    };
    const fresh = await planCap(chunks(bytes, 7), bytes.length, head, 8 * 1024);
    expect(await planCap(reusing, bytes.length, head, 8 * 1024)).toEqual(fresh);
  });

  it("output dressed as framing (many or large status lines, a second zipfile) is cut like any line", async () => {
    const starting = JSON.stringify({ status: "starting" });
    const pads = Array.from({ length: 40 }, (_, i) => JSON.stringify({ status: "running", i, pad: "p".repeat(2000) }));
    const huge = JSON.stringify({ status: "running", pad: "h".repeat(100 * 1024) });
    const raw = Buffer.alloc(30, 1);
    const zip = `${JSON.stringify({ zipfile: raw.length })}\n${raw.toString("base64")}`;
    const second = `${JSON.stringify({ zipfile: 200_000 })}\n${Buffer.alloc(150_000, 2).toString("base64")}`;
    const text = `${[starting, ...pads, huge].join("\n")}\n${zip}${second}{"eof": true}`;
    const { out, plan } = await cap(text, 64 * 1024);
    expect(text.length).toBeGreaterThan(380_000);
    // The cap holds within a few kept frames (16 status lines of ~2 KB, the first zip, eof).
    expect(out.length).toBeLessThan(64 * 1024 + 40 * 1024);
    expect(plan.cut?.bytes).toBeGreaterThan(300_000);
    expect(out).toContain(zip);
    expect(out).not.toContain("h".repeat(1000));
  });

  it("a stream under the cap is untouched", async () => {
    const text = runnerStream(5);
    const { out, plan } = await cap(text, 64 * 1024);
    expect(out).toBe(text);
    expect(plan.cut).toBeNull();
  });

  it("a head ending inside the zip data (a large zip, few events) keeps everything", async () => {
    const raw = Buffer.alloc(3000, 7);
    const text = `${JSON.stringify({ status: "starting" })}\n${JSON.stringify({ zipfile: raw.length })}\n${raw.toString("base64")}{"eof": true}`;
    const { out, plan } = await cap(text, 1000);
    expect(out).toBe(text);
    expect(plan.cut).toBeNull();
  });
});

describe("ResultsSource (agent/output-cap.ts)", () => {
  it("sends the head while the command runs, then the planned stream; its size and cut match the plan", async () => {
    const { mkdtemp, open, writeFile } = await import("node:fs/promises");
    const { tmpdir } = await import("node:os");
    const { join } = await import("node:path");
    const { ResultsSource } = await import("../../agent/output-cap.js");
    const path = join(await mkdtemp(join(tmpdir(), "cap-")), "stdout");
    const text = Array.from({ length: 2000 }, (_, i) => `row ${i}\n`).join("");
    await writeFile(path, text);
    const file = await open(path, "r");
    try {
      const source = new ResultsSource(1000);
      const buffer = Buffer.alloc(64);
      const read = async (ended: boolean) => {
        let out = "";
        for (let at = 0; ; ) {
          const n = await source.read(
            file,
            buffer,
            buffer.length,
            at,
            ended ? { size: async () => text.length } : null,
          );
          if (n === 0) return out;
          out += buffer.subarray(0, n).toString();
          at += n;
        }
      };
      const live = await read(false);
      expect(live.length).toBeLessThanOrEqual(500);
      expect(live.endsWith("\n")).toBe(true);
      const all = await read(true);
      expect(all.startsWith(live)).toBe(true);
      expect(all).toBe((await cap(text, 1000)).out);
      expect(await source.size(file, text.length)).toBe(Buffer.byteLength(all));
      expect(source.cut?.lines).toBeGreaterThan(1800);
      const whole = new ResultsSource(null);
      expect(await whole.size(file, text.length)).toBe(text.length);
    } finally {
      await file.close();
    }
  });
});
