import { describe, expect, it } from "vitest";
import {
  type Parsed,
  errorLine,
  greeting,
  parseCommand,
  resultsHeaderLine,
  submitCreatedLine,
} from "../../meshctl/control/protocol.js";
import { isSecureLink, parseTcpAddress } from "../../meshctl/control/main.js";

const command = (line: string) => {
  const parsed = parseCommand(line);
  if (!parsed.ok) throw new Error(`expected a command from ${line}, got error ${parsed.error}`);
  return parsed.command;
};
const refusal = (line: string) => {
  const parsed: Parsed = parseCommand(line);
  if (parsed.ok) throw new Error(`expected an error from ${line}, got ${JSON.stringify(parsed.command)}`);
  return parsed.error;
};

describe("control-service lines", () => {
  it("formats receptor's fixed lines", () => {
    expect(greeting("bridge-1")).toBe("Receptor Control, node bridge-1\n");
    expect(submitCreatedLine("AbCd1234")).toBe("Work unit created with ID AbCd1234. Send stdin data and EOF.\n");
    expect(resultsHeaderLine("AbCd1234")).toBe("Streaming results for work unit AbCd1234\n");
    expect(errorLine("Unknown command")).toBe("ERROR: Unknown command\n");
  });

  it("keeps an error on one line", () => {
    expect(errorLine("two\r\nlines\nhere")).toBe("ERROR: two lines here\n");
  });
});

describe("word commands", () => {
  it.each([
    ["status", { kind: "status", requestedFields: null }],
    ["STATUS", { kind: "status", requestedFields: null }],
    ["ping node-2", { kind: "ping", target: "node-2" }],
    ["work list", { kind: "work-list", unitId: null }],
    ["work list AbCd1234", { kind: "work-list", unitId: "AbCd1234" }],
    ["Work Status AbCd1234", { kind: "work-status", unitId: "AbCd1234" }],
    ["work cancel AbCd1234", { kind: "work-cancel", unitId: "AbCd1234" }],
    ["work release AbCd1234", { kind: "work-release", unitId: "AbCd1234" }],
    ["work force-release AbCd1234", { kind: "work-force-release", unitId: "AbCd1234" }],
    ["work results AbCd1234", { kind: "work-results", unitId: "AbCd1234", startpos: 0 }],
    ["work results AbCd1234 1024", { kind: "work-results", unitId: "AbCd1234", startpos: 1024 }],
    [
      "work submit localhost cat",
      { kind: "work-submit", node: "localhost", worktype: "cat", params: {}, ttl: null, signwork: false },
    ],
    [
      "work submit edge-1 ansible-runner --worker-info x",
      {
        kind: "work-submit",
        node: "edge-1",
        worktype: "ansible-runner",
        params: { params: "--worker-info x" },
        ttl: null,
        signwork: false,
      },
    ],
  ])("%s", (line, expected) => {
    expect(command(line)).toEqual(expected);
  });

  it.each([
    ["status now", "status command does not take parameters"],
    ["ping", "no ping target"],
    ["work", "bad command"],
    ["work frobnicate x", "bad command"],
    ["work status", "work status requires a unit ID"],
    ["work cancel a b", "work cancel does not take parameters after the unit ID"],
    ["work results", "work results requires a unit ID"],
    ["work results a 1 2", "work results only takes a unit ID and optional start position"],
    ["work results a -5", "error converting start position to integer: -5"],
    ["work results a x", "error converting start position to integer: x"],
    ["work submit edge-1", "work submit requires a target node and work type"],
    ["frobnicate", "Unknown command"],
    ["connect node-2 control", "connect is not supported by meshctl control-service"],
    ["traceroute node-2", "traceroute is not supported by meshctl control-service"],
  ])("%s is refused: %s", (line, message) => {
    expect(refusal(line)).toBe(message);
  });
});

describe("reload", () => {
  it("is a command in words and in JSON (AWX on Kubernetes sends it)", () => {
    expect(command("reload")).toEqual({ kind: "reload" });
    expect(command('{"command":"reload"}')).toEqual({ kind: "reload" });
  });
});

describe("JSON commands", () => {
  it("reads receptorctl's version probe", () => {
    expect(command('{"command":"status","requested_fields":["Version"]}')).toEqual({
      kind: "status",
      requestedFields: ["Version"],
    });
  });

  it("reads a receptorctl work submit, passing unknown keys on as params", () => {
    const line = JSON.stringify({
      command: "work",
      subcommand: "submit",
      node: "edge-1",
      worktype: "ansible-runner",
      params: "--worker-info",
      ttl: "20s",
      signwork: "true",
      tlsclient: "tls",
      signature: "sig",
      secret_x: "y",
    });
    expect(command(line)).toEqual({
      kind: "work-submit",
      node: "edge-1",
      worktype: "ansible-runner",
      params: { params: "--worker-info", secret_x: "y" },
      ttl: "20s",
      signwork: true,
    });
  });

  it('reads any signwork but "true" as false, as receptor does', () => {
    for (const signwork of ["false", "yes", "True", ""]) {
      expect(
        command(JSON.stringify({ command: "work", subcommand: "submit", node: "n", worktype: "w", signwork })),
      ).toMatchObject({ signwork: false });
    }
  });

  it.each([
    ['{"command":"work","subcommand":"status","unitid":"AbCd1234"}', { kind: "work-status", unitId: "AbCd1234" }],
    ['{"command":"work","subcommand":"list"}', { kind: "work-list", unitId: null }],
    ['{"command":"work","subcommand":"list","unitid":"AbCd1234"}', { kind: "work-list", unitId: "AbCd1234" }],
    ['{"command":"work","subcommand":"RELEASE","unitid":"AbCd1234"}', { kind: "work-release", unitId: "AbCd1234" }],
    [
      '{"command":"work","subcommand":"results","unitid":"AbCd1234","startpos":7}',
      { kind: "work-results", unitId: "AbCd1234", startpos: 7 },
    ],
    [
      '{"command":"work","subcommand":"results","unitid":"AbCd1234","startpos":"7"}',
      { kind: "work-results", unitId: "AbCd1234", startpos: 7 },
    ],
    ['{"command":"ping","target":"edge-1"}', { kind: "ping", target: "edge-1" }],
    ['{"command":"status"}', { kind: "status", requestedFields: null }],
    [
      '{"command":"work","subcommand":"results","unitid":"AbCd1234","startpos":0}',
      { kind: "work-results", unitId: "AbCd1234", startpos: 0 },
    ],
  ])("%s", (line, expected) => {
    expect(command(line)).toEqual(expected);
  });

  it.each([
    // JSON.parse's own message, not the "not an object" that follows a swallowed parse error.
    ['{"command": "work", "subcommand": ', /^invalid JSON command: (?!not an object)/],
    ['{"verb":"status"}', /^JSON did not contain a command$/],
    ['{"command":5}', /^command must be a string$/],
    ['{"command":"WORK","subcommand":"list"}', /^Unknown command$/],
    ['{"command":"status","requested_fields":"Version"}', /^each element of requested_fields must be a string$/],
    ['{"command":"status","requested_fields":[1]}', /^each element of requested_fields must be a string$/],
    ['{"command":"status","requested_fields":["Version",1]}', /^each element of requested_fields must be a string$/],
    ['{"command":"work","subcommand":"frobnicate","unitid":"a"}', /^bad command$/],
    [
      '{"command":"work","subcommand":"results","unitid":"a","startpos":true}',
      /^field startpos value true is not convertible to an int$/,
    ],
    [
      '{"command":"work","subcommand":"results","unitid":"a","startpos":"7x"}',
      /^field startpos value "7x" is not convertible to an int$/,
    ],
    [
      '{"command":"work","subcommand":"results","unitid":"a","startpos":"x7"}',
      /^field startpos value "x7" is not convertible to an int$/,
    ],
    ['{"command":"ping"}', /^no ping target$/],
    ['{"command":"ping","target":1}', /^ping target must be string$/],
    ['{"command":"work"}', /^field subcommand missing$/],
    ['{"command":"work","subcommand":"status"}', /^field unitid missing$/],
    ['{"command":"work","subcommand":"cancel","unitid":5}', /^field unitid must be a string$/],
    ['{"command":"work","subcommand":"results","unitid":"a"}', /^field startpos missing$/],
    [
      '{"command":"work","subcommand":"results","unitid":"a","startpos":-1}',
      /^field startpos value -1 is not convertible to an int$/,
    ],
    [
      '{"command":"work","subcommand":"submit","node":"n","worktype":"w","ttl":30}',
      /^submit parameters must all be strings and ttl is not$/,
    ],
    ['{"command":"work","subcommand":"submit","worktype":"w"}', /^field node missing$/],
    ['{"command":"work","subcommand":"submit","node":"n"}', /^field worktype missing$/],
    ['{"command":"work","subcommand":"submit","node":"n","worktype":"../x"}', /^unknown work type \.\.\/x: /],
    ['{"command":"work","subcommand":"submit","node":"has space","worktype":"w"}', /^invalid node ID has space: /],
  ])("%s is refused", (line, message) => {
    expect(refusal(line)).toMatch(message);
  });
});

describe("the broker link, for secret_* params", () => {
  it.each([
    ["https://broker.example.com", true],
    ["http://127.0.0.1:8787", true],
    ["http://localhost:8787/base", true],
    ["http://[::1]:8787", true],
    ["http://broker.example.com", false],
    ["http://10.0.0.5:8787", false],
  ])("%s is secure: %s", (url, secure) => {
    expect(isSecureLink(url)).toBe(secure);
  });
});

describe("--tcp", () => {
  it.each([
    ["27199", { host: "127.0.0.1", port: 27199 }],
    ["127.0.0.1:0", { host: "127.0.0.1", port: 0 }],
    ["localhost:8080", { host: "localhost", port: 8080 }],
    ["[::1]:8080", { host: "::1", port: 8080 }],
  ])("takes %s", (text, expected) => {
    expect(parseTcpAddress(text)).toEqual(expected);
  });

  it.each([
    ["0.0.0.0:27199", /not a loopback address/],
    ["10.0.0.5:27199", /not a loopback address/],
    ["127.0.0.1:99999", /out of range/],
    ["127.0.0.1:", /takes PORT or HOST:PORT/],
    ["port", /takes PORT or HOST:PORT/],
  ])("refuses %s", (text, message) => {
    const parsed = parseTcpAddress(text);
    expect("error" in parsed && parsed.error).toMatch(message);
  });
});
