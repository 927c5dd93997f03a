#!/usr/bin/env node
/** `mesh-agent`: the execution-node agent. Dials out to the broker; needs no inbound port. */
import { hostname, availableParallelism } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { setFlagsFromString } from "node:v8";
import { NAME_PATTERN } from "../shared/ids.js";
import { loadCaFile, plainHttpWarning } from "../shared/node/tls.js";
import { Agent } from "./agent.js";
import {
  AGENT_DEFAULTS,
  ANSIBLE_RUNNER_WORK,
  type WorkCommand,
  bytes,
  capacity,
  duration,
  loadConfig,
  outputCap,
  positiveInt,
  setting,
} from "./config.js";
import { LEVELS, type Level, createLogger } from "../shared/node/log.js";
import { onPath, probeVersions } from "./probe.js";
import { REPLAY_FILE, ReplayCache } from "./replay.js";
import { WorkVerifier, loadVerifyKey } from "./verify.js";
import { cliFailure, keyValues, packageVersion, usage as fail } from "../shared/node/cli.js";

const D = AGENT_DEFAULTS;
const HELP = `Usage: mesh-agent --broker URL --token TOKEN [options]

Connects out to a mesh-agent broker and runs the units of work it assigns.

Options (each also from the environment variable shown):
  --broker URL          broker base URL, e.g. https://broker.example.com      MESH_BROKER
  --token TOKEN         join token (role agent), used until the broker issues  MESH_TOKEN
                        this node's credential, kept in the work dir (0600)
  --mesh ID             mesh to join (default: ${D.mesh})                        MESH_ID
  --node-id ID          this node's id (default: config node.id, else hostname) MESH_NODE_ID
  --config FILE         receptor-style YAML with work-command entries          MESH_AGENT_CONFIG
  --work-dir DIR        per-unit directories and spool                         MESH_WORK_DIR
                        (default: ~/.local/state/mesh-agent)
  --capacity N          units run at once, or "unlimited": start every unit   MESH_CAPACITY
                        assigned, as receptor does (default: CPU count)
  --tag k=v             a tag to advertise; repeatable                         MESH_TAGS (k=v,k=v)
  --cancel-grace SEC    SIGINT→SIGKILL grace on cancel (default: ${D.cancelGraceSeconds})           MESH_CANCEL_GRACE
  --min-free SIZE       take no units while the work dir has less free space   MESH_MIN_FREE
                        (default: 256MiB; e.g. 1G, 500MB, 0 to turn it off)
  --verify-key FILE     Ed25519 public key (PEM) that units of work types with MESH_VERIFY_KEY
                        verifysignature: true must be signed with; repeatable
                        to accept several (key rotation). Default: the config's
                        work-verification publickey
  --ca-file FILE        also trust these CA certificates (PEM) for the broker's MESH_CA_FILE
                        TLS, e.g. a private CA (NODE_EXTRA_CA_CERTS works too)
  --output-cap SIZE     keep about this much of each unit's results: head and  MESH_OUTPUT_CAP
                        tail, with a marker where lines were cut (ansible-
                        runner streams stay readable by process); a work
                        type's own outputcap wins (default: none)
  --max-units N         leave after taking N units (one-shot: 1)               MESH_MAX_UNITS
  --idle-exit DURATION  leave after this long without a unit, e.g. 10m         MESH_IDLE_EXIT
  --max-uptime DURATION leave after running this long, e.g. 12h                MESH_MAX_UPTIME
                        Leaving: the broker is told (the node shows as left,
                        not lost), the units held finish, the agent exits 0
  --log-level LEVEL     debug, info, warn or error (default: ${D.logLevel})             MESH_LOG_LEVEL
  -h, --help            this help
  -v, --version         print the version

Without --config, the work type "ansible-runner" runs "ansible-runner worker" if
ansible-runner is on PATH.`;

async function main(argv: string[]): Promise<void> {
  // An agent idles far more than it works: V8's memory-saving heuristics keep its young generation
  // at ~1.5 MiB of the 8 it grows to while the modules load, and the old one tighter (idle VmRSS
  // 84 → 78 MiB, private 29 → 23 on Node 24), with no measurable cost to streaming (docs/benchmarks.md,
  // row 6). Set at run time, not as a node flag, so every way of starting the agent gets it; the
  // flag changes GC and tiering heuristics only, never what code does.
  setFlagsFromString("--optimize-for-size");
  const { values } = parseArgs({
    args: argv,
    options: {
      broker: { type: "string" },
      token: { type: "string" },
      mesh: { type: "string" },
      "node-id": { type: "string" },
      config: { type: "string" },
      "work-dir": { type: "string" },
      capacity: { type: "string" },
      tag: { type: "string", multiple: true },
      "cancel-grace": { type: "string" },
      "min-free": { type: "string" },
      "verify-key": { type: "string", multiple: true },
      "log-level": { type: "string" },
      "ca-file": { type: "string" },
      "output-cap": { type: "string" },
      "max-units": { type: "string" },
      "idle-exit": { type: "string" },
      "max-uptime": { type: "string" },
      help: { type: "boolean", short: "h" },
      version: { type: "boolean", short: "v" },
    },
  });
  if (values.help) return void console.log(HELP);
  if (values.version) return void console.log(packageVersion());
  const env = process.env;
  const broker = values.broker ?? env.MESH_BROKER ?? fail("give the broker URL: --broker URL or MESH_BROKER");
  const token = values.token ?? env.MESH_TOKEN ?? fail("give a token: --token TOKEN or MESH_TOKEN");
  if (!/^https?:\/\//.test(broker)) fail(`--broker must be an http(s) URL, got "${broker}"`);
  const level = values["log-level"] ?? env.MESH_LOG_LEVEL ?? D.logLevel;
  if (!(LEVELS as readonly string[]).includes(level))
    fail(`--log-level must be one of ${LEVELS.join(", ")}, got "${level}"`);
  const log = createLogger(level as Level);
  const insecure = plainHttpWarning(broker);
  if (insecure) {
    log.warn("agent:plain-http", { broker, warning: insecure });
    console.error(`mesh-agent: ${insecure}`);
  }
  const caFile = values["ca-file"] ?? env.MESH_CA_FILE;
  // The undici package only with --ca-file: an idle agent otherwise never loads it (socket.ts).
  const dispatcher = caFile
    ? new (await import("undici")).Agent({
        connect: { ca: await loadCaFile(caFile).catch((e: Error) => fail(`--ca-file: ${e.message}`)) },
      })
    : undefined;

  const configPath = values.config ?? env.MESH_AGENT_CONFIG;
  const config = configPath
    ? await loadConfig(configPath)
    : { nodeId: null, workCommands: [], verifyKey: null, ignored: [] };
  for (const key of new Set(config.ignored))
    log.info("config:ignored-entry", { entry: key, reason: "not used by mesh-agent" });
  let workCommands: WorkCommand[] = config.workCommands;
  if (!configPath && (await onPath("ansible-runner"))) {
    workCommands = [ANSIBLE_RUNNER_WORK];
  }
  const cap = setting(values["output-cap"], "--output-cap", env, "MESH_OUTPUT_CAP");
  if (cap) {
    outputCap(cap);
    workCommands = workCommands.map((w) => ({ ...w, outputcap: w.outputcap ?? cap.raw }));
  }
  if (workCommands.length === 0) {
    fail(
      configPath
        ? `${configPath} defines no work-command entries`
        : "no work types: ansible-runner is not on PATH and no --config was given",
    );
  }

  const nodeId =
    values["node-id"] ??
    env.MESH_NODE_ID ??
    config.nodeId ??
    hostname()
      .replace(/[^A-Za-z0-9._-]/g, "-")
      .slice(0, 64);
  if (!NAME_PATTERN.test(nodeId)) fail(`node id "${nodeId}" must be 1-64 characters of [A-Za-z0-9._-]`);
  const mesh = values.mesh ?? env.MESH_ID ?? D.mesh;
  if (!NAME_PATTERN.test(mesh)) fail(`mesh id "${mesh}" must be 1-64 characters of [A-Za-z0-9._-]`);
  const tagItems = values.tag ?? (env.MESH_TAGS ? env.MESH_TAGS.split(",").filter(Boolean) : []);
  // Absolute: a unit's supervisor starts in / and is handed paths under it.
  const workDir = resolve(values["work-dir"] ?? env.MESH_WORK_DIR ?? D.workDir);

  const keyPaths =
    values["verify-key"] ?? (env.MESH_VERIFY_KEY ? [env.MESH_VERIFY_KEY] : config.verifyKey ? [config.verifyKey] : []);
  const verifying = workCommands.filter((w) => w.verifysignature).map((w) => w.worktype);
  if (verifying.length > 0 && keyPaths.length === 0) {
    fail(
      `work type ${verifying.join(", ")} has verifysignature: true, so give the public key its units must be signed with: --verify-key FILE, MESH_VERIFY_KEY, or a work-verification entry in the config`,
    );
  }
  const keys = await Promise.all(keyPaths.map(loadVerifyKey));
  const verifier =
    keys.length > 0 ? new WorkVerifier(keys, { nodeId, mesh }, new ReplayCache(join(workDir, REPLAY_FILE))) : null;

  const cancelGrace = setting(values["cancel-grace"], "--cancel-grace", env, "MESH_CANCEL_GRACE");
  const minFree = setting(values["min-free"], "--min-free", env, "MESH_MIN_FREE");
  const maxUnits = setting(values["max-units"], "--max-units", env, "MESH_MAX_UNITS");
  const idleExit = setting(values["idle-exit"], "--idle-exit", env, "MESH_IDLE_EXIT");
  const maxUptime = setting(values["max-uptime"], "--max-uptime", env, "MESH_MAX_UPTIME");
  const agent = new Agent({
    broker,
    mesh,
    token,
    nodeId,
    workDir,
    capacity: capacity(
      setting(values.capacity, "--capacity", env, "MESH_CAPACITY") ?? {
        raw: String(availableParallelism()),
        from: "the CPU count",
      },
    ),
    tags: keyValues("--tag", tagItems),
    workCommands,
    versions: await probeVersions(packageVersion()),
    cancelGraceMs: 1000 * (cancelGrace ? positiveInt(cancelGrace) : D.cancelGraceSeconds),
    minFreeBytes: minFree ? bytes(minFree) : D.minFreeBytes,
    verifier,
    log,
    dispatcher,
    lifetime: {
      maxUnits: maxUnits ? positiveInt(maxUnits) : null,
      idleExitMs: idleExit ? duration(idleExit) : null,
      maxUptimeMs: maxUptime ? duration(maxUptime) : null,
    },
  });
  let signals = 0;
  const onSignal = (signal: string) => {
    signals += 1;
    if (signals > 1) process.exit(130);
    log.info("agent:draining", {
      signal,
      hint: "units in progress finish first; signal again to exit now (their processes keep running, and the next start on this work dir takes them up)",
    });
    void agent.stop().then(() => process.exit(0));
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  log.info("agent:start", {
    broker,
    mesh,
    node: nodeId,
    workTypes: workCommands.map((w) => w.worktype),
    verifying,
    verifyKeys: keyPaths,
  });
  await agent.run();
  // Left by a lifetime limit (lifetime.ts): drained, the broker told; nothing is left to do.
  if (agent.leaving) {
    log.info("agent:left", { reason: agent.leaving });
    process.exit(0);
  }
}

main(process.argv.slice(2)).catch((error: unknown) => {
  const { lines, exitCode } = cliFailure("mesh-agent", error, "stack");
  for (const line of lines) console.error(line);
  process.exit(exitCode);
});
