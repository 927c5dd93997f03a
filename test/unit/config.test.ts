import { describe, expect, it } from "vitest";
import { ConfigError, parseConfig, streamsPayload } from "../../agent/config.js";

function configError(text: string, source?: string): ConfigError {
  let thrown: unknown;
  try {
    parseConfig(text, source);
  } catch (error) {
    thrown = error;
  }
  expect(thrown).toBeInstanceOf(ConfigError);
  const error = thrown as ConfigError;
  expect(error).toBeInstanceOf(Error);
  expect(error.name).toBe("ConfigError");
  return error;
}

const RECEPTOR_CONF = `---
- node:
    id: execution
- log-level:
    level: Debug
- tcp-listener:
    port: 2222
- control-service:
    service: control
    filename: /tmp/receptor.sock
- work-command:
    worktype: ansible-runner
    command: ansible-runner
    params: worker
    allowruntimeparams: true
`;

describe("parseConfig", () => {
  it("reads the receptor.conf example", () => {
    expect(parseConfig(RECEPTOR_CONF)).toEqual({
      nodeId: "execution",
      workCommands: [
        {
          worktype: "ansible-runner",
          command: "ansible-runner",
          params: "worker",
          allowruntimeparams: true,
          verifysignature: false,
          envallow: [],
        },
      ],
      verifyKey: null,
      ignored: ["log-level", "tcp-listener", "control-service"],
    });
  });

  it("accepts the receptor.conf of an AWX execution node as it is deployed", () => {
    const config = parseConfig(`---
- node:
    id: exec-1.example.com
    datadir: /tmp/receptor
    firewallrules:
      - action: reject
        tonode: exec-1.example.com
        toservice: control
- log-level: info
- tls-server:
    name: tls_server
    cert: /etc/receptor/tls/receptor.crt
    key: /etc/receptor/tls/receptor.key
    clientcas: /etc/receptor/tls/ca/mesh-CA.crt
    requireclientcert: true
    mintls13: False
- tls-client:
    name: tls_client
    cert: /etc/receptor/tls/receptor.crt
    key: /etc/receptor/tls/receptor.key
    rootcas: /etc/receptor/tls/ca/mesh-CA.crt
    insecureskipverify: false
- tcp-listener:
    port: 27199
    tls: tls_server
- work-verification:
    publickey: /etc/receptor/work_public_key.pem
- work-command:
    worktype: ansible-runner
    command: ansible-runner
    params: worker
    allowruntimeparams: true
    verifysignature: true
- control-service:
    service: control
    filename: /var/run/receptor/receptor.sock
    permissions: 0660
    tls: tls_server
`);
    expect(config).toEqual({
      nodeId: "exec-1.example.com",
      workCommands: [
        {
          worktype: "ansible-runner",
          command: "ansible-runner",
          params: "worker",
          allowruntimeparams: true,
          verifysignature: true,
          envallow: [],
        },
      ],
      verifyKey: "/etc/receptor/work_public_key.pem",
      ignored: ["log-level", "tls-server", "tls-client", "tcp-listener", "control-service"],
    });
  });

  it("accepts a controller's receptor.conf, reading only its work-command entries", () => {
    const config = parseConfig(`---
- node:
    id: awx-1
- log-level:
    level: info
- local-only:
- tcp-peer:
    address: exec-1.example.com:27199
    redial: true
    tls: tls_client
- work-signing:
    privatekey: /etc/receptor/work_private_key.pem
    tokenexpiration: 1m
- control-service:
    service: control
    filename: /var/run/awx-receptor/receptor.sock
    permissions: 0660
- work-command:
    worktype: local
    command: ansible-runner
    params: worker
    allowruntimeparams: true
- work-kubernetes:
    worktype: kubernetes-runtime-auth
    authmethod: runtime
    allowruntimeauth: true
    allowruntimepod: true
    allowruntimeparams: true
`);
    expect(config.nodeId).toBe("awx-1");
    expect(config.workCommands).toEqual([
      {
        worktype: "local",
        command: "ansible-runner",
        params: "worker",
        allowruntimeparams: true,
        verifysignature: false,
        envallow: [],
      },
    ]);
    expect(config.ignored).toEqual([
      "log-level",
      "local-only",
      "tcp-peer",
      "work-signing",
      "control-service",
      "work-kubernetes",
    ]);
  });

  it("reads receptor's work-verification entry, in its mapping and bare forms", () => {
    expect(parseConfig("- work-verification:\n    publickey: /etc/receptor/work-public.pem\n").verifyKey).toBe(
      "/etc/receptor/work-public.pem",
    );
    expect(parseConfig("- work-verification: keys/verify-key.pem\n").verifyKey).toBe("keys/verify-key.pem");
    expect(parseConfig("- work-signing: {privatekey: /k.pem}\n").ignored).toEqual(["work-signing"]);
  });

  it.each([
    ["- work-verification:"],
    ["- work-verification: {}"],
    ["- work-verification: {publickey: ''}"],
    ["- work-verification: {publickey: [a]}"],
  ])("rejects a work-verification entry without a key path: %j", (text) => {
    expect(configError(text).message).toMatch(/work-verification needs publickey: PATH/);
  });

  it("reads flow-style entries and applies defaults", () => {
    const config = parseConfig(`
- node: {id: x}
- work-command: {worktype: echo, command: /bin/cat}
- work-command:
    worktype: signed
    command: ansible-runner
    params: "worker --private-data-dir=/tmp/x"
    allowruntimeparams: false
    verifysignature: true
    envallow: [SSH_AUTH_SOCK, "AWS_*"]
`);
    expect(config.nodeId).toBe("x");
    expect(config.ignored).toEqual([]);
    expect(config.workCommands).toEqual([
      {
        worktype: "echo",
        command: "/bin/cat",
        params: "",
        allowruntimeparams: false,
        verifysignature: false,
        envallow: [],
      },
      {
        worktype: "signed",
        command: "ansible-runner",
        params: "worker --private-data-dir=/tmp/x",
        allowruntimeparams: false,
        verifysignature: true,
        envallow: ["SSH_AUTH_SOCK", "AWS_*"],
      },
    ]);
    expect(() => parseConfig('- work-command: {worktype: x, command: y, envallow: ["A=B"]}')).toThrow(
      /envallow entries are variable names/,
    );
  });

  it("reports other receptor entries as ignored, in order", () => {
    const config = parseConfig(`
- tcp-listener: {port: 2222}
- control-service: {service: control, filename: /tmp/receptor.sock}
- log-level: debug
- work-command: {worktype: echo, command: cat}
- tcp-peer: {address: "hop:2222"}
`);
    expect(config.ignored).toEqual(["tcp-listener", "control-service", "log-level", "tcp-peer"]);
    expect(config.nodeId).toBeNull();
    expect(config.workCommands.map((w) => w.worktype)).toEqual(["echo"]);
  });

  it("treats an empty file or an empty document as no entries", () => {
    for (const text of ["", "\n", "# only a comment\n", "---\n"]) {
      expect(parseConfig(text)).toEqual({ nodeId: null, workCommands: [], verifyKey: null, ignored: [] });
    }
    expect(parseConfig("[]")).toEqual({ nodeId: null, workCommands: [], verifyKey: null, ignored: [] });
  });

  it("rejects a document that is not a list", () => {
    for (const text of ["node: {id: x}", "just text", "42"]) {
      expect(configError(text).message).toMatch(/expected a list/);
    }
  });

  it("rejects an entry with two keys", () => {
    const error = configError(`
- node: {id: x}
- work-command: {worktype: echo, command: cat}
  tcp-listener: {port: 2222}
`);
    expect(error.message).toMatch(/entry 2/);
    expect(error.message).toMatch(/one key/);
  });

  it.each([["- just-a-string"], ["- [a, b]"], ["- {}"], ["- null"]])(
    "rejects a non-mapping or empty entry %j",
    (text) => {
      expect(configError(text).message).toMatch(/entry 1 must be a mapping with one key/);
    },
  );

  it("rejects a duplicate work type", () => {
    const error = configError(`
- work-command: {worktype: echo, command: cat}
- work-command: {worktype: echo, command: tac}
`);
    expect(error.message).toMatch(/work type echo is defined twice/);
  });

  it.each(["../x", "-lead", "has space", "a".repeat(65), ""])("rejects bad work type name %j", (name) => {
    const error = configError(`- work-command: {worktype: ${JSON.stringify(name)}, command: cat}`);
    expect(error.message).toMatch(/work-command 1/);
    expect(error.message).toMatch(/worktype/);
  });

  it("rejects a missing or empty command", () => {
    expect(configError("- work-command: {worktype: echo}").message).toMatch(/work-command 1: command/);
    expect(configError("- work-command: {worktype: echo, command: ''}").message).toMatch(/work-command 1: command/);
  });

  it("counts the entry index over all entries", () => {
    const error = configError(`
- node: {id: x}
- log-level: debug
- work-command: {worktype: echo}
`);
    expect(error.message).toMatch(/work-command 3: command/);
  });

  it("rejects wrongly typed fields", () => {
    expect(configError("- work-command: {worktype: echo, command: cat, allowruntimeparams: 'yes'}").message).toMatch(
      /allowruntimeparams/,
    );
    expect(configError("- work-command: {worktype: echo, command: cat, params: [a, b]}").message).toMatch(/params/);
    expect(configError("- work-command:").message).toMatch(/work-command 1/);
  });

  it.each([["- {"], ["- a: [1, 2"], ["- a: 1\n  a: 2"], ["\t- a"]])("rejects invalid YAML %j", (text) => {
    expect(configError(text).message).toMatch(/not valid YAML/);
  });

  it.each([
    ["- node: {id: '../x'}"],
    ["- node: {id: ''}"],
    [`- node: {id: ${"a".repeat(65)}}`],
    ["- node: {id: 5}"],
    ["- node: {}"],
    ["- node:"],
    ["- node: execution"],
  ])("rejects bad node id in %j", (text) => {
    expect(configError(text).message).toMatch(/node\.id/);
  });

  it("names the source in its errors", () => {
    expect(configError("nope", "/etc/receptor/receptor.conf").message).toMatch(/^\/etc\/receptor\/receptor\.conf: /);
    expect(configError("nope").message).toMatch(/^config: /);
  });
});

describe("streamsPayload (early start)", () => {
  const w = (
    command: string,
    params: string,
    more: { streamingpayload?: boolean; verifysignature?: boolean } = {},
  ) => ({
    command,
    params,
    verifysignature: false,
    ...more,
  });
  it.each([
    ["ansible-runner worker", w("ansible-runner", "worker"), true],
    ["a path to ansible-runner, extra args", w("/usr/bin/ansible-runner", "worker --private-data-dir=/x"), true],
    ["worker cleanup reads no payload", w("ansible-runner", "worker cleanup"), false],
    ["ansible-runner but not worker", w("ansible-runner", "process"), false],
    ["anything else", w("cat", ""), false],
    ["declared on", w("cat", "", { streamingpayload: true }), true],
    ["declared off for the runner", w("ansible-runner", "worker", { streamingpayload: false }), false],
    ["never with a signature to verify", w("ansible-runner", "worker", { verifysignature: true }), false],
  ])("%s", (_name, work, expected) => expect(streamsPayload(work)).toBe(expected));

  it("refuses streamingpayload with verifysignature in a config", () => {
    expect(() =>
      parseConfig("- work-command: {worktype: a, command: cat, streamingpayload: true, verifysignature: true}"),
    ).toThrow(/streamingpayload cannot go with verifysignature/);
  });

  it("takes warmstart only on a work type that streams its payload", () => {
    expect(
      parseConfig("- work-command: {worktype: a, command: ansible-runner, params: worker, warmstart: true}"),
    ).toMatchObject({ workCommands: [{ worktype: "a", warmstart: true }] });
    expect(
      parseConfig("- work-command: {worktype: a, command: cat, streamingpayload: true, warmstart: true}"),
    ).toMatchObject({ workCommands: [{ warmstart: true }] });
    for (const line of [
      "{worktype: a, command: cat, warmstart: true}",
      "{worktype: a, command: ansible-runner, params: worker, streamingpayload: false, warmstart: true}",
      "{worktype: a, command: ansible-runner, params: worker, verifysignature: true, warmstart: true}",
    ])
      expect(() => parseConfig(`- work-command: ${line}`)).toThrow(
        /warmstart needs a command that reads a self-delimiting stdin/,
      );
  });
});
