import { describe, expect, it } from "vitest";
import { parseListen, parseServeArgs } from "../../serve/args.js";
import { serveLine, workerdLine } from "../../serve/log.js";
import type { Manifest } from "../../serve/manifest.js";
import { workerdConfig } from "../../serve/workerd-config.js";

const VARS = ["NODE_LEASE_MS", "PING_INTERVAL_MS"];

describe("mesh-broker serve arguments", () => {
  it.each([
    ["127.0.0.1:8787", { host: "127.0.0.1", port: 8787 }],
    ["0.0.0.0:443", { host: "0.0.0.0", port: 443 }],
    ["[::1]:0", { host: "[::1]", port: 0 }],
    ["broker.internal:8443", { host: "broker.internal", port: 8443 }],
  ])("--listen %s", (text, want) => {
    expect(parseListen(text)).toEqual(want);
  });

  it.each(["8787", ":8787", "127.0.0.1", "127.0.0.1:65536", "::1:80", "host:port", "a b:1"])(
    "--listen refuses %j",
    (text) => {
      expect(parseListen(text)).toBeUndefined();
    },
  );

  it("takes state, listen, TLS pair, token file and vars, in either flag form", () => {
    const parsed = parseServeArgs(
      [
        "serve",
        "--state",
        "s",
        "--listen=127.0.0.1:0",
        "--tls-cert",
        "c.pem",
        "--tls-key=k.pem",
        "--admin-token-file",
        "t",
        "--var",
        "NODE_LEASE_MS=500",
      ],
      VARS,
    );
    expect(parsed).toEqual({
      ok: true,
      value: {
        state: "s",
        listen: { host: "127.0.0.1", port: 0 },
        tls: { cert: "c.pem", key: "k.pem" },
        adminTokenFile: "t",
        vars: { NODE_LEASE_MS: "500" },
      },
    });
  });

  it.each([
    [["serve", "--state", "s", "--listen", "127.0.0.1:1", "--admin-token", "x"], /--admin-token is refused/],
    [["serve", "--state", "s", "--listen", "127.0.0.1:1", "--token=x"], /--token is refused/],
    [["serve", "--listen", "127.0.0.1:1"], /--state DIR is required/],
    [["serve", "--state", "s"], /--listen HOST:PORT is required/],
    [["serve", "--state", "s", "--listen", "127.0.0.1:1", "--tls-cert", "c"], /go together/],
    [["serve", "--state", "s", "--listen", "127.0.0.1:1", "--var", "ADMIN_TOKEN=x"], /not one of wrangler.toml's vars/],
    [["serve", "--state", "s", "--listen", "127.0.0.1:1", "--var", "lower=1"], /NAME=VALUE/],
    [["serve", "--state"], /needs a value/],
    [["serve", "--inspector-port", "9229"], /unknown option/],
    [["dev"], /unknown command dev/],
    [[], /missing command/],
  ])("%j is refused", (argv, message) => {
    const parsed = parseServeArgs(argv, VARS);
    expect(parsed.ok).toBe(false);
    if (!parsed.ok) expect(parsed.error).toMatch(message);
  });
});

const MANIFEST: Manifest = {
  name: "mesh-agent-broker",
  compatibilityDate: "2026-11-17",
  compatibilityFlags: ["nodejs_compat"],
  vars: { NODE_LEASE_MS: "15000", QUOTE: 'a"b\\c' },
  durableObjects: [
    { binding: "MESH", className: "MeshObject" },
    { binding: "KV", className: "KvObject" },
  ],
  sqliteClasses: ["MeshObject"],
  assetsBinding: "ASSETS",
  secrets: ["ADMIN_TOKEN"],
};

describe("the workerd config", () => {
  const plain = workerdConfig(MANIFEST, "/opt/b", { doDir: "/var/lib/mesh/do", listen: "127.0.0.1:8787" });

  it("binds every Durable Object, var, the assets Worker and the secret from the environment", () => {
    expect(plain).toContain('(name = "MESH", durableObjectNamespace = "MeshObject")');
    expect(plain).toContain('(className = "MeshObject", uniqueKey = "mesh-agent-broker-MeshObject", enableSql = true)');
    expect(plain).toContain('(className = "KvObject", uniqueKey = "mesh-agent-broker-KvObject", enableSql = false)');
    expect(plain).toContain('(name = "NODE_LEASE_MS", text = "15000")');
    expect(plain).toContain('(name = "QUOTE", text = "a\\"b\\\\c")');
    expect(plain).toContain('(name = "ASSETS", service = "dashboard")');
    expect(plain).toContain('(name = "ADMIN_TOKEN", fromEnvironment = "MESH_ADMIN_TOKEN")');
    expect(plain).toContain('esModule = embed "/opt/b/index.js"');
    expect(plain).toContain('disk = (path = "/var/lib/mesh/do", writable = true)');
    expect(plain).toContain('compatibilityFlags = ["nodejs_compat"]');
  });

  it("listens plain HTTP without TLS files, HTTPS with them, and never configures an inspector", () => {
    expect(plain).toContain('address = "127.0.0.1:8787", http = (), service = "broker"');
    const tls = workerdConfig(MANIFEST, "/opt/b", {
      doDir: "/d",
      listen: "0.0.0.0:443",
      tls: { cert: "/etc/c.pem", key: "/etc/k.pem" },
    });
    expect(tls).toContain(
      'https = (options = (), tlsOptions = (keypair = (privateKey = embed "/etc/k.pem", certificateChain = embed "/etc/c.pem")))',
    );
    for (const text of [plain, tls]) expect(text).not.toMatch(/inspector|debug/i);
  });

  it("refuses relative paths, which workerd would resolve against its import path", () => {
    expect(() => workerdConfig(MANIFEST, "dist/broker", { doDir: "/d", listen: "127.0.0.1:1" })).toThrow(/absolute/);
  });
});

describe("serve's log lines", () => {
  const now = new Date("2026-12-01T00:00:00Z");
  it.each([
    [
      "the broker's JSON through console.log",
      '{"timestamp":"1796183191187","level":"log","message":"{\\"event\\":\\"token:created\\",\\"role\\":\\"agent\\"}"}',
      { time: "2026-12-02T03:46:31.187Z", level: "info", source: "broker", event: "token:created", role: "agent" },
    ],
    [
      "a workerd warning",
      '{"timestamp":"1796183191187","level":"warn","source":"entry.rs:170","message":"flag is default","context_depth":0}',
      {
        time: "2026-12-02T03:46:31.187Z",
        level: "warn",
        source: "workerd",
        origin: "entry.rs:170",
        message: "flag is default",
        context_depth: 0,
      },
    ],
    [
      "plain text on stderr",
      "*** Fatal uncaught kj::Exception",
      { time: now.toISOString(), level: "error", source: "workerd", message: "*** Fatal uncaught kj::Exception" },
    ],
    [
      "a broker line that names its own time and source",
      '{"timestamp":"1796183191187","level":"error","message":"{\\"event\\":\\"x\\",\\"time\\":1,\\"source\\":\\"evil\\"}"}',
      { time: "2026-12-02T03:46:31.187Z", level: "error", source: "broker", event: "x" },
    ],
  ])("%s", (_, line, want) => {
    expect(workerdLine(line, "stderr", now)).toEqual(want);
  });

  it("skips blank lines, and serve's own lines say serve", () => {
    expect(workerdLine("   ", "stdout", now)).toBeUndefined();
    expect(serveLine("info", "serve:listening", { url: "x" }, now)).toEqual({
      time: now.toISOString(),
      level: "info",
      source: "serve",
      event: "serve:listening",
      url: "x",
    });
  });
});
