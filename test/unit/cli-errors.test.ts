/** Every error a CLI reports on purpose: its stable code, its exit status and what is printed, from one table. */
import { parseArgs } from "node:util";
import { describe, expect, it } from "vitest";
import { ConfigError } from "../../agent/config.js";
import { AgentRefused } from "../../agent/refusal.js";
import { KeyError } from "../../agent/verify.js";
import { MeshApiError } from "../../meshctl/client.js";
import { ControlServiceError } from "../../meshctl/control/server.js";
import { SigningError } from "../../meshctl/sign.js";
import { CliError, UsageError, cliFailure, keyValues } from "../../shared/node/cli.js";

const TABLE: [error: CliError, code: string, exitCode: number, lines: string[]][] = [
  [new UsageError("bad"), "MESH_ERR_USAGE", 2, ["x: bad", "Try 'x --help'."]],
  [new ConfigError("bad"), "MESH_ERR_CONFIG", 2, ["x: bad", "Try 'x --help'."]],
  [new KeyError("bad"), "MESH_ERR_VERIFY_KEY", 2, ["x: bad", "Try 'x --help'."]],
  [new AgentRefused("bad"), "MESH_ERR_REFUSED", 1, ["x: bad"]],
  [new SigningError("bad"), "MESH_ERR_SIGNING_KEY", 1, ["x: bad"]],
  [new ControlServiceError("bad"), "MESH_ERR_CONTROL_SOCKET", 1, ["x: bad"]],
  [new MeshApiError("unknown_unit", "bad", 404), "unknown_unit", 1, ["x: unknown_unit: bad"]],
];

describe("CLI errors", () => {
  it.each(TABLE)("%s: code %s, exit %i", (error, code, exitCode, lines) => {
    expect(error).toBeInstanceOf(CliError);
    expect(error.code).toBe(code);
    expect(error.exitCode).toBe(exitCode);
    expect(cliFailure("x", error)).toEqual({ lines, exitCode });
  });

  it("every code is distinct", () => {
    const codes = TABLE.map(([, code]) => code);
    expect(new Set(codes).size).toBe(codes.length);
  });

  it("node:util parseArgs errors are usage errors", () => {
    let thrown: unknown;
    try {
      parseArgs({ args: ["--nope"], options: {} });
    } catch (error) {
      thrown = error;
    }
    const failure = cliFailure("x", thrown);
    expect(failure.exitCode).toBe(2);
    expect(failure.lines[0]).toMatch(/^x: Unknown option '--nope'/);
    expect(failure.lines[1]).toBe("Try 'x --help'.");
  });

  it("anything else is a failure, printed as its message or its stack", () => {
    const error = new Error("boom");
    expect(cliFailure("x", error)).toEqual({ lines: ["x: boom"], exitCode: 1 });
    expect(cliFailure("x", error, "stack").lines[0]).toContain("at ");
    expect(cliFailure("x", "text")).toEqual({ lines: ["x: text"], exitCode: 1 });
  });
});

describe("keyValues", () => {
  it("splits at the first =, later items win", () => {
    expect(keyValues("--tag", ["a=1", "b=x=y", "a=2", "c="])).toEqual({ a: "2", b: "x=y", c: "" });
  });

  it.each(["novalue", "=v"])("refuses %j, naming the option", (item) => {
    expect(() => keyValues("-a", [item])).toThrow(new UsageError(`-a takes key=value, got "${item}"`));
  });
});
