import { describe, expect, it } from "vitest";
import { allowed, unitEnvironment } from "../../agent/unit-env.js";

const TOKEN = "mtk_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
const CREDENTIAL = "mnc_BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB";

describe("unitEnvironment", () => {
  const agent = {
    PATH: "/usr/bin",
    HOME: "/home/a",
    LC_ALL: "C.UTF-8",
    ANSIBLE_FORCE_COLOR: "1",
    XDG_RUNTIME_DIR: "/run/user/1000",
    MESH_TOKEN: TOKEN,
    MESH_WORK_DIR: "/var/lib/mesh-agent",
    MESH_BROKER: "https://b",
    NODE_OPTIONS: "--inspect",
    AWS_SECRET_ACCESS_KEY: "s3cr3t",
    ANSIBLE_SMUGGLED: `x${CREDENTIAL}`,
    SSH_AUTH_SOCK: "/tmp/ssh",
    unset: undefined,
  };

  // [case, extra allow list, variables expected]
  const TABLE: [string, string[], string[]][] = [
    ["defaults", [], ["PATH", "HOME", "LC_ALL", "ANSIBLE_FORCE_COLOR", "XDG_RUNTIME_DIR"]],
    [
      "a work command adds a name",
      ["SSH_AUTH_SOCK"],
      ["PATH", "HOME", "LC_ALL", "ANSIBLE_FORCE_COLOR", "XDG_RUNTIME_DIR", "SSH_AUTH_SOCK"],
    ],
    [
      "a prefix",
      ["AWS_*"],
      ["PATH", "HOME", "LC_ALL", "ANSIBLE_FORCE_COLOR", "XDG_RUNTIME_DIR", "AWS_SECRET_ACCESS_KEY"],
    ],
    [
      "MESH_* never, even asked for",
      ["MESH_*", "MESH_TOKEN"],
      ["PATH", "HOME", "LC_ALL", "ANSIBLE_FORCE_COLOR", "XDG_RUNTIME_DIR"],
    ],
    [
      "everything asked: still no MESH_* and no secret value",
      ["*"],
      [
        "PATH",
        "HOME",
        "LC_ALL",
        "ANSIBLE_FORCE_COLOR",
        "XDG_RUNTIME_DIR",
        "NODE_OPTIONS",
        "AWS_SECRET_ACCESS_KEY",
        "SSH_AUTH_SOCK",
      ],
    ],
  ];

  it.each(TABLE)("%s", (_case, extra, expected) => {
    const env = unitEnvironment(agent, extra, [TOKEN, CREDENTIAL]);
    expect(Object.keys(env).sort()).toEqual([...expected].sort());
    for (const value of Object.values(env)) {
      expect(value).not.toContain(TOKEN);
      expect(value).not.toContain(CREDENTIAL);
    }
  });

  it("matches names exactly and prefixes only with a trailing *", () => {
    expect(allowed("PATH", ["PATH"])).toBe(true);
    expect(allowed("PATHX", ["PATH"])).toBe(false);
    expect(allowed("LC_TIME", ["LC_*"])).toBe(true);
    expect(allowed("LC", ["LC_*"])).toBe(false);
  });
});
