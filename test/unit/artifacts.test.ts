import { Readable } from "node:stream";
import { zipSync } from "fflate";
import { extract } from "tar-stream";
import { describe, expect, it } from "vitest";
import {
  type ArtifactStore,
  type ArtifactUnit,
  artifactFiles,
  jobEventName,
  maskCommand,
  safeName,
} from "../../broker/unit/artifacts.js";
import type { EventRow } from "../../broker/unit/events.js";
import { INITIAL_PARSE, parseEvents } from "../../broker/unit/events.js";
import { REDACTED } from "../../broker/unit/redact.js";
import { type TarFile, tarStream } from "../../broker/unit/tar.js";

const encoder = new TextEncoder();
const ascii = (text: string) => encoder.encode(text);
const unix = (mode: number) => ({ os: 3, attrs: mode * 0x10000 });
const COMMAND = JSON.stringify({
  command: ["ansible-playbook", "site.yml"],
  cwd: "/tmp/p",
  env: { SECRET: "hunter2", HOME: "/root" },
});

function eventLine(counter: number, uuid = `uuid-${counter}`): string {
  return JSON.stringify({ uuid, counter, stdout: `ok ${counter}`, event: "runner_on_ok", event_data: { host: "h" } });
}

/** A worker stream shaped like ansible-runner's, with a real artifacts zip unless `zip` is given. */
function runnerResults(options: { events?: number; zip?: Uint8Array | null; eof?: boolean } = {}): Uint8Array {
  const lines = [
    JSON.stringify({
      status: "starting",
      runner_ident: "r",
      command: ["ansible-playbook"],
      env: { SECRET: "hunter2" },
    }),
  ];
  lines.push(JSON.stringify({ status: "running", runner_ident: "r" }));
  for (let i = 1; i <= (options.events ?? 3); i++) lines.push(eventLine(i));
  lines.push(JSON.stringify({ status: "failed", runner_ident: "r" }));
  const zip =
    options.zip === undefined
      ? zipSync({
          rc: [ascii("2"), unix(0o100600)],
          status: [ascii("failed"), unix(0o100600)],
          stdout: [ascii("PLAY\r\n".repeat(1000)), unix(0o100600)],
          stderr: [new Uint8Array(), unix(0o100644)],
          command: [ascii(COMMAND), unix(0o100600)],
          "job_events/": [new Uint8Array(), unix(0o40700)],
          "fact_cache/": [new Uint8Array(), unix(0o40755)],
          "../escape": [ascii("x"), unix(0o100600)],
        })
      : options.zip;
  let text = `${lines.join("\n")}\n`;
  if (zip) text += `{"zipfile": ${zip.byteLength}}\n${Buffer.from(zip).toString("base64")}`;
  if (options.eof !== false) text += '{"eof": true}\n';
  return ascii(text);
}

/** The Unit object's store over `results`, stored in chunks of `chunk` bytes, with its parsed events. */
function fakeStore(results: Uint8Array, chunk = 1000): ArtifactStore {
  const { events } = parseEvents(INITIAL_PARSE, results, true);
  const rows: EventRow[] = events.map((e, i) => ({
    seq: i + 1,
    at: 0,
    kind: e.kind,
    off: e.offset,
    len: e.length,
    meta: JSON.stringify(e.meta),
    secret: e.secret ? 1 : 0,
  }));
  return {
    readAt: (_stream, offset) =>
      offset < results.byteLength
        ? results.slice(offset, Math.min(results.byteLength, (Math.floor(offset / chunk) + 1) * chunk))
        : null,
    rangeReader: () => (offset, length) => results.slice(offset, Math.min(results.byteLength, offset + length)),
    eventsAfter: (after, limit) => rows.filter((r) => r.seq > after).slice(0, limit),
  };
}

function unitDoc(results: Uint8Array, fields: Partial<ArtifactUnit> = {}): ArtifactUnit {
  const { state } = parseEvents(INITIAL_PARSE, results, true);
  return {
    id: "abcd1234",
    state: "Failed",
    stdoutSize: results.byteLength,
    exitCode: 2,
    finishedAt: "2026-01-01T00:00:01.000Z",
    parse: state,
    ...fields,
  };
}

/** The tar's entries: name → contents (directories as null), in order. */
async function untar(stream: ReadableStream<Uint8Array>): Promise<Map<string, string | null>> {
  const files = new Map<string, string | null>();
  const reader = extract();
  const done = (async () => {
    for await (const entry of reader) {
      const chunks: Buffer[] = [];
      for await (const chunk of entry) chunks.push(chunk as Buffer);
      files.set(entry.header.name, entry.header.type === "directory" ? null : Buffer.concat(chunks).toString());
    }
  })();
  Readable.fromWeb(stream as import("node:stream/web").ReadableStream).pipe(reader);
  await done;
  return files;
}

const tarOf = (store: ArtifactStore, doc: ArtifactUnit, redact = false) =>
  untar(tarStream(artifactFiles(store, doc, redact), () => undefined));

describe("artifacts of an ansible-runner unit", () => {
  it("are the zip's files plus one job_events file per event, byte for byte its line", async () => {
    const results = runnerResults({ events: 3 });
    const files = await tarOf(fakeStore(results), unitDoc(results));
    expect([...files.keys()]).toEqual([
      "artifacts/",
      "artifacts/rc",
      "artifacts/status",
      "artifacts/stdout",
      "artifacts/stderr",
      "artifacts/command",
      "artifacts/job_events/",
      "artifacts/fact_cache/",
      "artifacts/job_events/1-uuid-1.json",
      "artifacts/job_events/2-uuid-2.json",
      "artifacts/job_events/3-uuid-3.json",
    ]);
    expect(files.get("artifacts/rc")).toBe("2");
    expect(files.get("artifacts/status")).toBe("failed");
    expect(files.get("artifacts/stdout")).toBe("PLAY\r\n".repeat(1000));
    expect(files.get("artifacts/command")).toBe(COMMAND);
    expect(files.get("artifacts/job_events/2-uuid-2.json")).toBe(eventLine(2));
  });

  it("inflate a large, highly compressed stdout whole, a step at a time", async () => {
    const stdout = ascii("ok: [localhost]\r\n".repeat(400_000));
    const results = runnerResults({ zip: zipSync({ stdout: [stdout, unix(0o100600)] }) });
    const files = await tarOf(fakeStore(results, 256 * 1024), unitDoc(results));
    expect(files.get("artifacts/stdout")!.length).toBe(stdout.byteLength);
    expect(files.get("artifacts/stdout")).toBe(Buffer.from(stdout).toString());
  });

  it("mask the environment in command for readers that get redaction", async () => {
    const results = runnerResults();
    const files = await tarOf(fakeStore(results), unitDoc(results), true);
    const command = JSON.parse(files.get("artifacts/command")!) as { env: Record<string, string>; cwd: string };
    expect(command.env).toEqual({ SECRET: REDACTED, HOME: REDACTED });
    expect(command.cwd).toBe("/tmp/p");
    expect([...files.values()].join("")).not.toContain("hunter2");
  });

  it("without a zip (cut short), take status from the last status line and rc from the exit code", async () => {
    const results = runnerResults({ zip: null, eof: false });
    const files = await tarOf(fakeStore(results), unitDoc(results, { state: "Canceled", exitCode: 130 }));
    expect(files.get("artifacts/status")).toBe("failed");
    expect(files.get("artifacts/rc")).toBe("130");
    expect(files.has("artifacts/job_events/3-uuid-3.json")).toBe(true);
    expect(files.has("artifacts/stdout")).toBe(false);
  });

  it("treat a zip that does not read as no zip", async () => {
    const results = runnerResults({ zip: new Uint8Array(100).fill(7) });
    const files = await tarOf(fakeStore(results), unitDoc(results));
    expect(files.get("artifacts/status")).toBe("failed");
    expect(files.get("artifacts/job_events/1-uuid-1.json")).toBe(eventLine(1));
  });

  it("leave out events stored after the snapshot", async () => {
    const results = runnerResults({ zip: null, eof: false, events: 5 });
    const cut = results.indexOf(0x0a, Buffer.from(results).indexOf(eventLine(3))) + 1;
    const files = await tarOf(
      fakeStore(results),
      unitDoc(results, { stdoutSize: cut, state: "Running", exitCode: null }),
    );
    expect([...files.keys()].filter((k) => k.includes(".json"))).toEqual([
      "artifacts/job_events/1-uuid-1.json",
      "artifacts/job_events/2-uuid-2.json",
      "artifacts/job_events/3-uuid-3.json",
    ]);
    expect(files.has("artifacts/rc")).toBe(false);
  });

  it("read 10,000 events a page at a time", async () => {
    const results = runnerResults({ events: 10_000 });
    const files = await tarOf(fakeStore(results, 64 * 1024), unitDoc(results));
    expect([...files.keys()].filter((k) => k.startsWith("artifacts/job_events/") && k.endsWith(".json")).length).toBe(
      10_000,
    );
    expect(files.get("artifacts/job_events/10000-uuid-10000.json")).toBe(eventLine(10_000));
  });
});

describe("artifacts of any other command", () => {
  it("are the raw results as stdout, with rc and status from the unit", async () => {
    const results = ascii("line one\nline two\n".repeat(2000));
    const files = await tarOf(fakeStore(results, 777), unitDoc(results, { state: "Succeeded", exitCode: 0 }));
    expect([...files.keys()]).toEqual(["artifacts/", "artifacts/stdout", "artifacts/rc", "artifacts/status"]);
    expect(files.get("artifacts/stdout")).toBe(Buffer.from(results).toString());
    expect(files.get("artifacts/rc")).toBe("0");
    expect(files.get("artifacts/status")).toBe("successful");
  });

  it("are empty stdout for a unit that wrote nothing", async () => {
    const results = new Uint8Array();
    const files = await tarOf(
      fakeStore(results),
      unitDoc(results, { state: "Canceled", exitCode: null, parse: INITIAL_PARSE }),
    );
    expect(files.get("artifacts/stdout")).toBe("");
    expect(files.get("artifacts/status")).toBe("canceled");
  });
});

describe("the tar stream", () => {
  it("reads a file's body only as the reader pulls", async () => {
    let produced = 0;
    const big: TarFile = {
      name: "big",
      type: "file",
      mode: 0o600,
      mtime: new Date(0),
      size: 1024 * 1024 * 64,
      *body() {
        for (let i = 0; i < 1024; i++) {
          produced++;
          yield new Uint8Array(64 * 1024);
        }
      },
    };
    const reader = tarStream([big], () => undefined).getReader();
    let got = 0;
    while (got < 1024 * 1024) got += (await reader.read()).value!.byteLength;
    await new Promise((r) => setTimeout(r, 50));
    expect(produced).toBeLessThan(40);
    await reader.cancel();
  });

  it("fails the stream, rather than end it early, when a body cannot be read", async () => {
    const failing: TarFile = {
      name: "f",
      type: "file",
      mode: 0o600,
      mtime: new Date(0),
      size: 10,
      *body() {
        yield new Uint8Array(4);
        throw new Error("the unit was released");
      },
    };
    const errors: unknown[] = [];
    const stream = tarStream([failing], (error) => errors.push(error));
    await expect(new Response(stream).arrayBuffer()).rejects.toThrow();
    expect(String(errors[0])).toMatch(/released/);
  });
});

describe("names and masking", () => {
  it("names job events as ansible-runner process does, refusing names that escape", () => {
    expect(jobEventName({ counter: 7, uuid: "a-b" })).toBe("7-a-b.json");
    expect(jobEventName({ counter: 7 })).toBeNull();
    expect(jobEventName({ counter: 1, uuid: "../../x" })).toBeNull();
    expect(safeName("fact_cache/host")).toBe(true);
    for (const bad of ["", "/etc/passwd", "a/../../b", "..", "a\\b", "a\nb"]) expect(safeName(bad)).toBe(false);
  });

  it("masks command's environment, and drops a command that is not JSON", () => {
    expect(JSON.parse(new TextDecoder().decode(maskCommand(ascii(COMMAND))!)).env.SECRET).toBe(REDACTED);
    expect(maskCommand(ascii("not json"))).toBeNull();
  });
});
