import { describe, expect, it } from "vitest";
import { AGENT_DEFAULTS, bytes, capacity, positiveInt, setting } from "../../agent/config.js";
import { MAX_CAPACITY } from "../../shared/protocol.js";
import { UsageError } from "../../shared/node/cli.js";

const env = { MESH_CANCEL_GRACE: "x", MESH_CAPACITY: "", MESH_MIN_FREE: "1G" };

describe("agent option values", () => {
  it("takes the flag, else the environment variable, else nothing (the default applies)", () => {
    expect(setting("5", "--cancel-grace", env, "MESH_CANCEL_GRACE")).toEqual({ raw: "5", from: "--cancel-grace" });
    expect(setting(undefined, "--cancel-grace", env, "MESH_CANCEL_GRACE")).toEqual({
      raw: "x",
      from: "MESH_CANCEL_GRACE",
    });
    expect(setting(undefined, "--work-dir", env, "MESH_WORK_DIR")).toBeUndefined();
  });

  it("an empty environment variable is a value, refused like any malformed one, not the default", () => {
    const value = setting(undefined, "--capacity", env, "MESH_CAPACITY")!;
    expect(() => capacity(value)).toThrow(new UsageError('MESH_CAPACITY must be a positive integer, got ""'));
  });

  it.each([
    [{ raw: "x", from: "MESH_CANCEL_GRACE" }, 'MESH_CANCEL_GRACE must be a positive integer, got "x"'],
    [{ raw: "0", from: "--cancel-grace" }, '--cancel-grace must be a positive integer, got "0"'],
    [{ raw: "-3", from: "--cancel-grace" }, '--cancel-grace must be a positive integer, got "-3"'],
  ])("positiveInt refuses %j naming where it came from", (value, message) => {
    expect(() => positiveInt(value)).toThrow(new UsageError(message));
  });

  it("capacity: a positive integer up to the protocol's maximum, or unlimited", () => {
    expect(capacity({ raw: "4", from: "--capacity" })).toBe(4);
    expect(capacity({ raw: "unlimited", from: "--capacity" })).toBe(MAX_CAPACITY);
    expect(() => capacity({ raw: String(MAX_CAPACITY + 1), from: "MESH_CAPACITY" })).toThrow(
      new UsageError(`MESH_CAPACITY is at most ${MAX_CAPACITY}, or "unlimited"`),
    );
  });

  it("bytes: a size, or a clear error", () => {
    expect(bytes({ raw: "1G", from: "MESH_MIN_FREE" })).toBe(1024 ** 3);
    expect(() => bytes({ raw: "lots", from: "--min-free" })).toThrow(
      new UsageError('--min-free takes a size such as 256MiB, 1G or 500MB, got "lots"'),
    );
  });

  it("defaults are written once", () => {
    expect(AGENT_DEFAULTS).toMatchObject({
      mesh: "default",
      logLevel: "info",
      cancelGraceSeconds: 10,
      minFreeBytes: 256 * 1024 * 1024,
    });
    expect(AGENT_DEFAULTS.workDir).toMatch(/\.local\/state\/mesh-agent$/);
  });
});
