import { describe, expect, it } from "vitest";
import type { WorkCommand } from "../../agent/config.js";
import { commandArgs } from "../../agent/command-args.js";

const work = (params: string, allowruntimeparams = false): WorkCommand => ({
  worktype: "test",
  command: "cmd",
  params,
  allowruntimeparams,
  verifysignature: false,
  envallow: [],
});

function expectArgs(result: ReturnType<typeof commandArgs>, args: string[]): void {
  expect(result).toEqual({ args });
}

function expectError(result: ReturnType<typeof commandArgs>): string {
  expect("error" in result).toBe(true);
  return "error" in result ? result.error : "";
}

describe("commandArgs", () => {
  it("has no args for empty params", () => {
    expectArgs(commandArgs(work(""), {}), []);
    expectArgs(commandArgs(work("   "), {}), []);
  });

  it("splits params on whitespace", () => {
    expectArgs(commandArgs(work("worker"), {}), ["worker"]);
    expectArgs(commandArgs(work("worker --private-data-dir=/tmp/x  -v"), {}), [
      "worker",
      "--private-data-dir=/tmp/x",
      "-v",
    ]);
  });

  it("respects quotes and escapes like a shell", () => {
    expectArgs(commandArgs(work(`a 'b c' "d e" f\\ g`), {}), ["a", "b c", "d e", "f g"]);
    expectArgs(commandArgs(work(`--opt="a b"`), {}), ["--opt=a b"]);
    expectArgs(commandArgs(work(`''`), {}), [""]);
    expectArgs(commandArgs(work(`'a;b' "c|d" 'x && y' '*'`), {}), ["a;b", "c|d", "x && y", "*"]);
  });

  it("expands nothing: $ words stay literal", () => {
    expectArgs(commandArgs(work("$HOME x$BAR/y a=$5 $1 $$ $"), {}), ["$HOME", "x$BAR/y", "a=$5", "$1", "$$", "$"]);
    expectArgs(commandArgs(work(`'$x' "$y" \\$z`), {}), ["$x", "$y", "$z"]);
    expectArgs(commandArgs(work("worker", true), { params: "--extra-vars price=$5" }), [
      "worker",
      "--extra-vars",
      "price=$5",
    ]);
  });

  it("appends runtime params when the work type allows them", () => {
    expectArgs(commandArgs(work("worker", true), { params: "--limit 'host a'" }), ["worker", "--limit", "host a"]);
    expectArgs(commandArgs(work("", true), { params: "x y" }), ["x", "y"]);
  });

  it("ignores other unit params", () => {
    expectArgs(commandArgs(work("worker", false), { other: "x; rm -rf /" }), ["worker"]);
  });

  it("treats empty runtime params as none, even when not allowed", () => {
    expectArgs(commandArgs(work("worker", false), { params: "" }), ["worker"]);
    expectArgs(commandArgs(work("worker", true), { params: "" }), ["worker"]);
  });

  it("refuses runtime params when the work type does not allow them", () => {
    const error = expectError(commandArgs(work("worker", false), { params: "--extra" }));
    expect(error).toMatch(/does not allow runtime params/);
    expect(error).toContain("test");
  });

  it.each([
    ["a;b"],
    ["a ; b"],
    ["a | b"],
    ["a && b"],
    ["a || b"],
    ["a & b"],
    ["a > out"],
    ["a < in"],
    ["$(ls)"],
    ["(a)"],
    ["*"],
    ["*.txt"],
    ["a?b"],
    ["a # comment"],
    ["#comment"],
  ])("refuses shell operators, globs and comments in params: %j", (params) => {
    expect(expectError(commandArgs(work(params), {}))).toMatch(/shell operators, globs or comments/);
  });

  it.each([["x; rm -rf /"], ["x | tee y"], ["*.yml"], ["x # y"]])(
    "refuses them in runtime params too: %j",
    (params) => {
      expect(expectError(commandArgs(work("worker", true), { params }))).toMatch(/shell operators, globs or comments/);
    },
  );

  it.each([["${HOME}"], ["a ${X:-d}"], ["'${HOME}'"]])(
    "refuses ${…}, which the splitter cannot keep literal: %j",
    (params) => {
      expect(expectError(commandArgs(work(params), {}))).toMatch(/may not contain \$\{/);
      expect(expectError(commandArgs(work("worker", true), { params }))).toMatch(/may not contain \$\{/);
    },
  );

  it("refuses NUL bytes, which spawn would throw on", () => {
    expect(expectError(commandArgs(work("a\0b"), {}))).toMatch(/NUL/);
    expect(expectError(commandArgs(work("worker", true), { params: "x\0" }))).toMatch(/NUL/);
  });
});
