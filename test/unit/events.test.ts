import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  INITIAL_PARSE,
  MAX_LINE_BYTES,
  MAX_STDOUT_CHARS,
  PREAMBLE_BYTES,
  type ParseState,
  type ParsedEvent,
  lineText,
  parseEvents,
} from "../../broker/unit/events.js";

const encoder = new TextEncoder();

/** A worker stream shaped like ansible-runner 2.3.1's, zip and eof included. */
function runnerStream(events: number, zipBytes = 100): Uint8Array {
  const lines = [
    JSON.stringify({
      status: "starting",
      runner_ident: "r1",
      command: ["ansible-playbook"],
      env: { SECRET: "x" },
      cwd: "/tmp",
    }),
  ];
  lines.push(JSON.stringify({ status: "running", runner_ident: "r1" }));
  for (let i = 1; i <= events; i++) {
    lines.push(
      JSON.stringify({
        uuid: `u-${i}`,
        counter: i,
        stdout: `\u001b[0;32mok: [h${i % 3}]\u001b[0m`,
        event: i === events ? "playbook_on_stats" : "runner_on_ok",
        parent_uuid: "p",
        event_data: { host: `h${i % 3}`, play: "p", task: "t", res: { changed: i % 2 === 0 } },
      }),
    );
  }
  lines.push(JSON.stringify({ status: "successful", runner_ident: "r1" }));
  const zip = Buffer.from(new Uint8Array(zipBytes).map((_, i) => (i * 7) & 0xff)).toString("base64");
  return encoder.encode(`${lines.join("\n")}\n{"zipfile": ${zipBytes}}\n${zip}{"eof": true}\n`);
}

/** Feeds `bytes` as the broker does: each call gets the stream from the state's offset to what has arrived. */
function feed(bytes: Uint8Array, cuts: number[], final = true): { state: ParseState; events: ParsedEvent[] } {
  let state = INITIAL_PARSE;
  const events: ParsedEvent[] = [];
  for (const end of [...cuts.filter((c) => c > 0 && c < bytes.byteLength).sort((a, b) => a - b), bytes.byteLength]) {
    if (state.offset >= end || state.ended) continue;
    const step = parseEvents(state, bytes.subarray(state.offset, end), final && end === bytes.byteLength);
    state = step.state;
    events.push(...step.events);
  }
  return { state, events };
}

const text = (bytes: Uint8Array, e: ParsedEvent) =>
  new TextDecoder().decode(bytes.subarray(e.offset, e.offset + e.length));

describe("ansible-runner worker streams", () => {
  it("gives one event per status and runner line, skips the zip, and stops at eof", () => {
    const bytes = runnerStream(5);
    const { state, events } = feed(bytes, []);
    expect(events.map((e) => e.kind)).toEqual([
      "status",
      "status",
      "event",
      "event",
      "event",
      "event",
      "event",
      "status",
    ]);
    expect(events.map((e) => e.meta.status ?? e.meta.event)).toEqual([
      "starting",
      "running",
      "runner_on_ok",
      "runner_on_ok",
      "runner_on_ok",
      "runner_on_ok",
      "playbook_on_stats",
      "successful",
    ]);
    expect(events[0]?.secret).toBe(true);
    expect(events.slice(1).some((e) => e.secret)).toBe(false);
    expect(events[3]?.meta).toMatchObject({
      counter: 2,
      uuid: "u-2",
      host: "h2",
      play: "p",
      task: "t",
      changed: true,
      parent_uuid: "p",
    });
    expect(events[2]?.meta.changed).toBeUndefined();
    for (const e of events) expect(() => JSON.parse(text(bytes, e))).not.toThrow();
    expect(state.ended).toBe(true);
    expect(state.zip).toEqual({ offset: expect.any(Number), length: 136 });
    const zipText = new TextDecoder().decode(bytes.subarray(state.zip!.offset, state.zip!.offset + state.zip!.length));
    expect(zipText).toMatch(/^[A-Za-z0-9+/]+=*$/);
  });

  it("gives the same events whatever the frame boundaries (zip and lines split anywhere)", () => {
    const bytes = runnerStream(8, 301);
    const whole = feed(bytes, []);
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 1, max: bytes.byteLength - 1 }), { maxLength: 12 }), (cuts) => {
        const split = feed(bytes, cuts);
        expect(split.events).toEqual(whole.events);
        expect(split.state.zip).toEqual(whole.state.zip);
      }),
      { numRuns: 300 },
    );
  });

  it("waits for the end of a line and of the zip before going on", () => {
    const bytes = runnerStream(1, 30);
    const zipLine = new TextDecoder().decode(bytes).indexOf('{"zipfile"');
    const first = parseEvents(INITIAL_PARSE, bytes.subarray(0, zipLine + 20), false);
    expect(first.events).toHaveLength(4);
    expect(first.state.offset).toBeGreaterThan(zipLine + 20);
    expect(first.state.ended).toBe(false);
  });

  it("lets warnings on stderr come first, and masks a line cut out of a status line", () => {
    const starting = JSON.stringify({ status: "starting", runner_ident: "r", env: { SECRET: "x" } });
    // stderr interleaved into a status line breaks its JSON, but it still holds the environment.
    const bytes = encoder.encode(
      `WARNING: deprecated\n${starting}\n${starting.slice(0, starting.indexOf("SECRET"))}oops\n`,
    );
    const whole = new Uint8Array([...bytes, ...runnerStream(1)]);
    const { events } = feed(whole, [5, 40]);
    expect(events.map((e) => e.kind).slice(0, 3)).toEqual(["line", "status", "line"]);
    expect(events.map((e) => e.secret).slice(0, 3)).toEqual([false, true, true]);
    expect(events.some((e) => e.meta.event === "playbook_on_stats")).toBe(true);
  });

  it("shows a line that is not JSON instead of dropping it, and skips keepalives", () => {
    const bytes = encoder.encode(
      '{"status": "running"}\nTraceback (most recent call last):\n{"event": "keepalive", "counter": 0, "uuid": 0}\n[1, 2]\n',
    );
    const { events } = feed(bytes, []);
    expect(
      events.map((e) => [e.kind, e.meta.status ?? lineText(bytes.subarray(e.offset, e.offset + e.length)).stdout]),
    ).toEqual([
      ["status", "running"],
      ["line", "Traceback (most recent call last):"],
      ["line", "[1, 2]"],
    ]);
  });

  it("keeps a long stdout out of the summary but whole in the line", () => {
    const stdout = "x".repeat(MAX_STDOUT_CHARS + 10);
    const bytes = encoder.encode(`${JSON.stringify({ event: "runner_on_ok", counter: 1, uuid: "a", stdout })}\n`);
    const [event] = feed(bytes, []).events;
    expect(event?.meta.stdout).toHaveLength(MAX_STDOUT_CHARS);
    expect(event?.meta.stdout_truncated).toBe(true);
    expect(event?.length).toBe(bytes.byteLength - 1);
  });

  it("marks failures unless ignored", () => {
    const line = (event: string, ignore: boolean) =>
      JSON.stringify({ event, counter: 1, uuid: "a", event_data: { ignore_errors: ignore } });
    const bytes = encoder.encode(
      `${[line("runner_on_failed", false), line("runner_on_failed", true), line("runner_on_unreachable", false)].join("\n")}\n`,
    );
    expect(feed(bytes, []).events.map((e) => e.meta.failed ?? false)).toEqual([true, false, true]);
  });
});

describe("other output", () => {
  it("groups the whole lines that arrived together and holds back a partial one", () => {
    const step = parseEvents({ ...INITIAL_PARSE, mode: "lines" }, encoder.encode("one\ntwo\nthr"), false);
    expect(step.events).toEqual([{ kind: "line", offset: 0, length: 8, meta: {}, secret: false }]);
    expect(lineText(encoder.encode("one\ntwo\n"))).toEqual({ stdout: "one\ntwo" });
    expect(step.state).toMatchObject({ offset: 8, mode: "lines" });
    const rest = parseEvents(step.state, encoder.encode("three"), true);
    expect(rest.events).toEqual([{ kind: "line", offset: 8, length: 5, meta: {}, secret: false }]);
    expect(rest.state).toMatchObject({ offset: 13, ended: true });
  });

  it("is not fooled by JSON that is not a runner stream", () => {
    const { state, events } = feed(encoder.encode('{"hello": 1}\n{"world": 2}\nplain\n'), []);
    expect(events.map((e) => e.kind)).toEqual(["line", "line", "line"]);
    expect(state.mode).not.toBe("runner");
  });

  it("decides for plain output once PREAMBLE_BYTES pass without a runner line, then groups lines", () => {
    const bytes = encoder.encode(`${"x".repeat(100)}\n`.repeat(Math.ceil(PREAMBLE_BYTES / 101) + 50));
    const { state, events } = feed(bytes, []);
    expect(state.mode).toBe("lines");
    expect(events.length).toBeLessThan(Math.ceil(PREAMBLE_BYTES / 101) + 10);
    expect(events.reduce((n, e) => n + e.length, 0)).toBe(bytes.byteLength);
  });

  it("keeps every byte of output in events of bounded size, whatever the frames", () => {
    fc.assert(
      fc.property(
        fc.string({ unit: fc.constantFrom("a", "b", "\n", "é"), maxLength: 400 }),
        fc.array(fc.nat(), { maxLength: 6 }),
        (output, cuts) => {
          const bytes = encoder.encode(`plain\n${output}`);
          const { events } = feed(bytes, cuts);
          let position = 0;
          for (const e of events) {
            expect(e.offset).toBe(position);
            position += e.length;
          }
          expect(position).toBe(bytes.byteLength);
        },
      ),
      { numRuns: 200 },
    );
  });

  it("cuts output with no newline into whole events as it comes instead of buffering it", () => {
    const bytes = new Uint8Array(3 * MAX_STDOUT_CHARS + 5).fill(0x61);
    const step = parseEvents(INITIAL_PARSE, bytes, false);
    expect(step.state).toMatchObject({ mode: "lines", offset: 3 * MAX_STDOUT_CHARS });
    expect(step.events.map((e) => e.length)).toEqual([MAX_STDOUT_CHARS, MAX_STDOUT_CHARS, MAX_STDOUT_CHARS]);
  });

  it("needs only the bytes after a held-back line, with the same events as from the whole", () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ length: fc.nat(2 * MAX_STDOUT_CHARS), newline: fc.boolean() }), { maxLength: 4 }),
        fc.nat(),
        fc.nat(),
        fc.boolean(),
        (lines, cut1, cut2, final) => {
          const bytes = encoder.encode(lines.map((l) => "a".repeat(l.length) + (l.newline ? "\n" : "")).join(""));
          const [c1, c2] = [cut1 % (bytes.byteLength + 1), cut2 % (bytes.byteLength + 1)].sort((a, b) => a - b);
          const first = parseEvents({ ...INITIAL_PARSE, mode: "lines" }, bytes.subarray(0, c1!), false);
          const from = Math.max(first.state.offset, c1!);
          const whole = parseEvents(first.state, bytes.subarray(first.state.offset, c2), final);
          const after = parseEvents(first.state, bytes.subarray(from, c2), final, from);
          expect(after).toEqual(whole);
        },
      ),
      { numRuns: 100 },
    );
  });

  it("cuts a runner line with no end at MAX_LINE_BYTES", () => {
    const bytes = new Uint8Array(MAX_LINE_BYTES + 5).fill(0x61);
    const step = parseEvents({ ...INITIAL_PARSE, mode: "runner" }, bytes, false);
    expect(step.state.offset).toBe(MAX_LINE_BYTES);
    expect(step.events).toHaveLength(1);
    expect(step.events[0]).toMatchObject({ kind: "line", length: MAX_LINE_BYTES });
  });
});
