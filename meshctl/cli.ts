#!/usr/bin/env node
/**
 * `meshctl`: the receptorctl-shaped client of a mesh-agent broker. Signing (zod, crypto) and the
 * control service load only in the commands that use them: each command pays Node's start and
 * what it imports, and a pipeline waits for it.
 */
import { parseArgs } from "node:util";
import { setFlagsFromString } from "node:v8";
import { cliFailure, keyValues, packageVersion, usage } from "../shared/node/cli.js";
import { parseDuration } from "../shared/duration.js";
import { loadCaFile, plainHttpWarning } from "../shared/node/tls.js";
import { saveArtifacts } from "./artifacts.js";
import { MeshClient } from "./client.js";
import { printEvents } from "./events.js";
import { printStatus, Progress } from "./output.js";
import { openPayload } from "./payload.js";

const HELP = `Usage: meshctl [--broker URL] [--token TOKEN] [--mesh ID] COMMAND

Commands:
  status [--json]                         nodes, work types, capacity, last seen
  work submit WORKTYPE [--node N] [-p FILE|-] [-f] [-a key=value]… [--ttl DURATION]
              [--idempotency-key K]       submit a unit; -p - reads the payload from stdin;
              [--tag k=v|k]… [--priority N]
                                          --tag: only nodes with all these tags (k alone: any
                                          value) may run it; --priority: higher first (-1000
                                          to 1000, default 0)
                                          -f streams its results to stdout and exits non-zero
                                          unless it succeeds; -a params="…" passes runtime params;
                                          --ttl 1h20m30s fails it "expired" unless started by then;
              [--lost-after DURATION]     --lost-after 30m: fail it "node lost" only after its
                                          node is silent this long (default: the broker's, 10m)
              [--sign-key FILE [--sign-ttl DURATION]]
                                          sign the unit (work type, node, params, payload
                                          sha256, unit id, expiry) with an Ed25519 private key;
                                          nodes with verifysignature run only signed units.
                                          The signature expires after --sign-ttl (default: --ttl,
                                          else 10m): the unit must start before then. Without
                                          --node, any node holding the public key may run it
  work list                               all units, as JSON
  work status ID                          one unit's status record, as JSON
  work results ID [--offset N] [-f]       raw results from byte N (-f: follow to the end)
  work events ID [--after N] [-f]         the unit's events after number N, one JSON object a
                                          line (-f: follow until the unit has ended)
      submit -f, results -f, events -f [--retry-for DURATION]
                                          ride out an unreachable broker (one notice on
                                          stderr) for up to this long (default 15m)
  work artifacts ID -o FILE|-             the unit's artifacts as a tar, as ansible-runner
                                          process writes them (-o -: to stdout); FILE appears
                                          only once the whole tar is in
  work cancel ID…                         cancel units
  work release [--force] ID…              cancel and delete units (never waits for the node:
                                          the broker holds the data, so --force is the same)
  keygen --out DIR                        write an Ed25519 key pair for signed work:
                                          DIR/signing-key.pem (private, mode 0600, for
                                          --sign-key) and DIR/verify-key.pem (for the agents'
                                          --verify-key); needs no broker
  token create --role ROLE [--name N]     a token of this mesh: admin, submit, read or agent
                                          (agent tokens join nodes); prints the secret once
  token list                              the mesh's tokens (never their secrets)
  token revoke ID…                        revoke tokens at once
  node remove ID…                         revoke a node's credential, disconnect it, fail its
                                          running units; it may join again with a join token
  node pause ID… | node resume ID…        a paused node finishes its units, takes no new ones
  node check ID…                          health check through the node: ansible-runner,
                                          podman, free disk, clock skew; a node that fails is
                                          passed over until a check passes; exit 1 if one fails
  metrics                                 the mesh's metrics, in Prometheus' text format
  control-service --socket PATH [--tcp [HOST:]PORT] [--node-id ID] [--sign-key FILE]
                                          serve receptor's control-service protocol on a Unix
                                          socket (mode 0600) and optionally a loopback TCP port,
                                          for receptorctl and AWX; --node-id names this bridge
                                          in the greeting (default: the hostname); --sign-key
                                          signs units submitted with signwork

Connection (flags or environment):
  --broker URL     MESH_BROKER
  --token TOKEN    MESH_TOKEN
  --mesh ID        MESH_ID (default: default)
  --ca-file FILE   MESH_CA_FILE: also trust these CA certificates (PEM) for the broker's TLS
                   (a private CA); NODE_EXTRA_CA_CERTS works too`;

/**
 * fetch through the undici package with --ca-file's CAs. Loaded only then: Node's own fetch starts
 * faster, and exposes no way to pass CAs but NODE_EXTRA_CA_CERTS at startup.
 */
async function trustingFetch(caFile: string): Promise<typeof fetch> {
  const ca = await loadCaFile(caFile).catch((e: Error) => usage(`--ca-file: ${e.message}`));
  const undici = await import("undici");
  const dispatcher = new undici.Agent({ connect: { ca } });
  return ((input: string, init?: RequestInit) =>
    undici.fetch(input, { ...(init as object), dispatcher })) as unknown as typeof fetch;
}

const printJson = (value: unknown) => process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);

async function main(argv: string[]): Promise<number> {
  // fetch parses HTTP with llhttp, in WebAssembly, and V8 compiles it again with its optimizing
  // compiler on background threads; a process that ends waits for such a compile to finish. That was
  // 60–90 ms after the last byte of every `submit -f`, which a pipeline (… | meshctl | process)
  // waited for, and ~60 ms of CPU a run (perf: Turboshaft's wasm pipeline on a V8 worker at exit).
  // The baseline compiler's code is plenty for a client's few responses: measured in the demo
  // playbook pipeline, exit → end 60–90 → 10–20 ms, meshctl CPU 0.20–0.22 → 0.14–0.16 s. All three
  // are needed at run time (dynamic tiering and eager tier-up each start the optimizing compile).
  // Set before the first fetch compiles the module; changes how wasm is compiled, never what it does.
  setFlagsFromString("--liftoff-only --no-wasm-dynamic-tiering --no-wasm-tier-up");
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      broker: { type: "string" },
      token: { type: "string" },
      mesh: { type: "string" },
      node: { type: "string" },
      payload: { type: "string", short: "p" },
      follow: { type: "boolean", short: "f" },
      param: { type: "string", short: "a", multiple: true },
      tag: { type: "string", multiple: true },
      priority: { type: "string" },
      offset: { type: "string" },
      after: { type: "string" },
      "idempotency-key": { type: "string" },
      ttl: { type: "string" },
      "lost-after": { type: "string" },
      "retry-for": { type: "string" },
      "sign-key": { type: "string" },
      "sign-ttl": { type: "string" },
      out: { type: "string", short: "o" },
      role: { type: "string" },
      name: { type: "string" },
      force: { type: "boolean" },
      json: { type: "boolean" },
      socket: { type: "string" },
      tcp: { type: "string" },
      "node-id": { type: "string" },
      "ca-file": { type: "string" },
      help: { type: "boolean", short: "h" },
      version: { type: "boolean", short: "v" },
    },
  });
  if (values.help || positionals.length === 0) {
    console.log(HELP);
    return values.help ? 0 : 2;
  }
  if (values.version) {
    console.log(packageVersion());
    return 0;
  }
  if (positionals[0] === "keygen") {
    const { generateKeys } = await import("./sign.js");
    printJson(await generateKeys(values.out ?? usage("keygen needs --out DIR")));
    return 0;
  }
  const broker = values.broker ?? process.env.MESH_BROKER ?? usage("give the broker URL: --broker URL or MESH_BROKER");
  const token = values.token ?? process.env.MESH_TOKEN ?? usage("give a token: --token TOKEN or MESH_TOKEN");
  const mesh = values.mesh ?? process.env.MESH_ID ?? "default";
  const insecure = plainHttpWarning(broker);
  if (insecure) process.stderr.write(`meshctl: ${insecure}\n`);
  const caFile = values["ca-file"] ?? process.env.MESH_CA_FILE;
  const retryFor = parseDuration(values["retry-for"] ?? "15m");
  if (!retryFor.ok) return usage(`--retry-for: ${retryFor.error.message}`);
  const client = new MeshClient(
    broker,
    token,
    mesh,
    { retryForMs: retryFor.value, notice: (message) => process.stderr.write(`meshctl: ${message}\n`) },
    caFile ? await trustingFetch(caFile) : fetch,
  );
  const [command, sub, ...rest] = positionals;

  if (command === "status") {
    const status = await client.status();
    if (values.json) printJson(status);
    else printStatus(status, process.stdout);
    return 0;
  }
  if (command === "token") return tokenCommand(client, sub, rest, values);
  if (command === "control-service") {
    const { parseTcpAddress, runControlService } = await import("./control/main.js");
    const tcp = values.tcp === undefined ? undefined : parseTcpAddress(values.tcp);
    if (tcp && "error" in tcp) return usage(tcp.error);
    return runControlService({
      client,
      brokerUrl: broker,
      mesh,
      socketPath: values.socket ?? usage("control-service needs --socket PATH"),
      tcp,
      nodeId: values["node-id"],
      signingKeyPath: values["sign-key"],
    });
  }
  if (command === "node") return nodeCommand(client, sub, rest);
  if (command === "metrics") {
    process.stdout.write(await client.metrics());
    return 0;
  }
  if (command !== "work") return usage(`unknown command "${command}"`);
  const ids = () => (rest.length > 0 ? rest : usage(`work ${sub} needs at least one unit id`));
  switch (sub) {
    case "submit": {
      const worktype = rest[0] ?? usage("work submit needs a WORKTYPE");
      const source = values.payload ?? usage("give the payload: -p FILE, or -p - for stdin");
      const ttl = values.ttl === undefined ? null : parseDuration(values.ttl);
      if (ttl && !ttl.ok) usage(`--ttl: ${ttl.error.message}`);
      const lostAfter = values["lost-after"] === undefined ? null : parseDuration(values["lost-after"]);
      if (lostAfter && !lostAfter.ok) usage(`--lost-after: ${lostAfter.error.message}`);
      const params = keyValues("-a", values.param ?? []);
      const signTtl = parseDuration(values["sign-ttl"] ?? values.ttl ?? "10m");
      if (!signTtl.ok) return usage(`--sign-ttl: ${signTtl.error.message}`);
      if (values["sign-ttl"] !== undefined && !values["sign-key"]) usage("--sign-ttl needs --sign-key");
      const opened = await openPayload(source, { whole: values["sign-key"] !== undefined });
      const payload = "framed" in opened ? null : opened;
      let unit;
      try {
        const signed =
          payload && values["sign-key"]
            ? await (await import("./sign.js")).signSubmission({
                keyPath: values["sign-key"],
                ttlMs: signTtl.value,
                mesh,
                worktype,
                node: values.node || null,
                params,
                payloadPath: payload.path,
              })
            : null;
        unit = await client.submit({
          worktype,
          node: values.node,
          params,
          idempotencyKey: values["idempotency-key"],
          tags: values.tag,
          priority: values.priority,
          ttl: values.ttl,
          lostAfter: values["lost-after"],
          unitId: signed?.unitId,
          signature: signed?.signature,
          payload: opened.body(),
          ...(payload ? { payloadSize: payload.size } : { payloadFramed: true }),
        });
      } finally {
        await payload?.remove();
      }
      if (!values.follow) {
        printJson(unit);
        return 0;
      }
      return follow(client, unit.id);
    }
    case "list":
      printJson(await client.list());
      return 0;
    case "status":
      printJson(await client.unit(rest[0] ?? usage("work status needs a unit id")));
      return 0;
    case "results": {
      const id = rest[0] ?? usage("work results needs a unit id");
      const offset = values.offset ?? "0";
      if (!/^\d+$/.test(offset)) usage("--offset must be a non-negative integer");
      if (values.follow) return follow(client, id, Number(offset));
      await client.results(id, process.stdout, { offset: Number(offset) });
      return 0;
    }
    case "events": {
      const id = rest[0] ?? usage("work events needs a unit id");
      const after = values.after ?? "0";
      if (!/^\d+$/.test(after)) usage("--after must be a non-negative integer");
      await printEvents(client, id, process.stdout, { after: Number(after), follow: values.follow === true });
      return 0;
    }
    case "artifacts": {
      const id = rest[0] ?? usage("work artifacts needs a unit id");
      await saveArtifacts(
        client,
        id,
        values.out ?? usage("give the file: -o FILE, or -o - for stdout"),
        process.stdout,
      );
      return 0;
    }
    case "cancel":
      for (const id of ids()) printJson(await client.cancel(id));
      return 0;
    case "release":
      for (const id of ids()) printJson(await client.release(id));
      return 0;
    default:
      return usage(`unknown work command "${sub ?? ""}"`);
  }
}

async function nodeCommand(client: MeshClient, sub: string | undefined, rest: string[]): Promise<number> {
  if (sub === "check") {
    if (rest.length === 0) usage("node check needs at least one node id");
    let failed = false;
    for (const id of rest) {
      const report = await client.checkNode(id);
      printJson({ node: id, ...report });
      failed ||= !report.ok;
    }
    return failed ? 1 : 0;
  }
  const act = { remove: client.removeNode, pause: client.pauseNode, resume: client.resumeNode }[sub ?? ""];
  if (!act) return usage(`unknown node command "${sub ?? ""}"`);
  if (rest.length === 0) usage(`node ${sub} needs at least one node id`);
  for (const id of rest) printJson(await act(id));
  return 0;
}

async function tokenCommand(
  client: MeshClient,
  sub: string | undefined,
  rest: string[],
  values: { role?: string; name?: string },
): Promise<number> {
  switch (sub) {
    case "create":
      printJson(
        await client.createToken(
          values.role ?? usage("token create needs --role admin|submit|read|agent"),
          values.name,
        ),
      );
      return 0;
    case "list":
      printJson(await client.tokens());
      return 0;
    case "revoke":
      if (rest.length === 0) usage("token revoke needs at least one token id");
      for (const id of rest) printJson(await client.revokeToken(id));
      return 0;
    default:
      return usage(`unknown token command "${sub ?? ""}"`);
  }
}

/** Raw results to stdout; progress to stderr only for a person at a terminal; exit 1 unless it succeeded. */
async function follow(client: MeshClient, id: string, offset = 0): Promise<number> {
  const progress = new Progress(process.stderr, id);
  progress.start(client);
  try {
    await client.results(id, process.stdout, { offset, follow: true });
  } finally {
    progress.stop();
  }
  const unit = await client.riding(() => client.unit(id));
  if (unit.state === "Succeeded") return 0;
  process.stderr.write(`meshctl: unit ${id} ${unit.state}: ${unit.detail}\n`);
  return 1;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    const { lines, exitCode } = cliFailure("meshctl", error);
    console.error(lines.join("\n"));
    process.exitCode = exitCode;
  },
);
