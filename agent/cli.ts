#!/usr/bin/env node
/** `mesh-agent`: the execution-node agent. Dials out to the broker; needs no inbound port. */
import { hostname, availableParallelism, homedir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { Agent as UndiciAgent } from "undici";
import { DEFAULT_MIN_FREE_BYTES, parseBytes } from "../shared/disk.js";
import { MIN_OUTPUT_CAP } from "../shared/output-cap.js";
import { parseDuration } from "../shared/duration.js";
import { NAME_PATTERN } from "../shared/ids.js";
import { loadCaFile, plainHttpWarning } from "../shared/node/tls.js";
import { MAX_CAPACITY } from "../shared/protocol.js";
import { Agent } from "./agent.js";
import { ConfigError, type WorkCommand, loadConfig } from "./config.js";
import { LEVELS, type Level, createLogger } from "../shared/node/log.js";
import { onPath, probeVersions } from "./probe.js";
import { AgentRefused } from "./refusal.js";
import { REPLAY_FILE, ReplayCache } from "./replay.js";
import { KeyError, WorkVerifier, loadVerifyKey } from "./verify.js";
import { isUsageError, packageVersion } from "../shared/node/cli.js";

const HELP = `Usage: mesh-agent --broker URL --token TOKEN [options]

Connects out to a mesh-agent broker and runs the units of work it assigns.

Options (each also from the environment variable shown):
  --broker URL          broker base URL, e.g. https://broker.example.com      MESH_BROKER
  --token TOKEN         join token (role agent), used until the broker issues  MESH_TOKEN
                        this node's credential, kept in the work dir (0600)
  --mesh ID             mesh to join (default: default)                        MESH_ID
  --node-id ID          this node's id (default: config node.id, else hostname) MESH_NODE_ID
  --config FILE         receptor-style YAML with work-command entries          MESH_AGENT_CONFIG
  --work-dir DIR        per-unit directories and spool                         MESH_WORK_DIR
                        (default: ~/.local/state/mesh-agent)
  --capacity N          units run at once, or "unlimited": start every unit   MESH_CAPACITY
                        assigned, as receptor does (default: CPU count)
  --tag k=v             a tag to advertise; repeatable                         MESH_TAGS (k=v,k=v)
  --cancel-grace SEC    SIGINT→SIGKILL grace on cancel (default: 10)           MESH_CANCEL_GRACE
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
  --log-level LEVEL     debug, info, warn or error (default: info)             MESH_LOG_LEVEL
  -h, --help            this help
  -v, --version         print the version

Without --config, the work type "ansible-runner" runs "ansible-runner worker" if
ansible-runner is on PATH.`;

class UsageError extends Error {}

function fail(message: string): never {
  throw new UsageError(message);
}

function parseTags(items: string[]): Record<string, string> {
  const tags: Record<string, string> = {};
  for (const item of items) {
    const eq = item.indexOf("=");
    if (eq <= 0) fail(`--tag takes key=value, got "${item}"`);
    tags[item.slice(0, eq)] = item.slice(eq + 1);
  }
  return tags;
}

/**
 * "unlimited" is receptor's behaviour (it starts whatever it is sent; AWX sizes nodes itself from
 * --worker-info): the largest capacity a hello may declare, so the broker never holds a unit back.
 */
function capacity(raw: string): number {
  if (raw === "unlimited") return MAX_CAPACITY;
  const n = positiveInt("--capacity", raw);
  if (n > MAX_CAPACITY) fail(`--capacity is at most ${MAX_CAPACITY}, or "unlimited"`);
  return n;
}

function positiveInt(name: string, raw: string): number {
  if (!/^\d+$/.test(raw) || Number(raw) < 1) fail(`${name} must be a positive integer, got "${raw}"`);
  return Number(raw);
}

function durationOption(name: string, raw: string | undefined): number | null {
  if (raw === undefined) return null;
  const parsed = parseDuration(raw);
  return parsed.ok ? parsed.value : fail(`${name}: ${parsed.error.message}`);
}

function bytesOption(name: string, raw: string | undefined): number {
  if (raw === undefined) return DEFAULT_MIN_FREE_BYTES;
  return parseBytes(raw) ?? fail(`${name} takes a size such as 256MiB, 1G or 500MB, got "${raw}"`);
}

async function main(argv: string[]): Promise<void> {
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
      "max-units": { type: "string" },
      "output-cap": { type: "string" },
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
  const level = values["log-level"] ?? env.MESH_LOG_LEVEL ?? "info";
  if (!(LEVELS as readonly string[]).includes(level)) fail(`--log-level must be one of ${LEVELS.join(", ")}`);
  const log = createLogger(level as Level);
  const insecure = plainHttpWarning(broker);
  if (insecure) {
    log.warn("agent:plain-http", { broker, warning: insecure });
    console.error(`mesh-agent: ${insecure}`);
  }
  const caFile = values["ca-file"] ?? env.MESH_CA_FILE;
  const dispatcher = caFile ? new UndiciAgent({ connect: { ca: await loadCaFile(caFile).catch((e: Error) => fail(`--ca-file: ${e.message}`)) } }) : undefined;

  const configPath = values.config ?? env.MESH_AGENT_CONFIG;
  const config = configPath ? await loadConfig(configPath) : { nodeId: null, workCommands: [], verifyKey: null, ignored: [] };
  for (const key of new Set(config.ignored)) log.info("config:ignored-entry", { entry: key, reason: "not used by mesh-agent" });
  let workCommands: WorkCommand[] = config.workCommands;
  if (!configPath && (await onPath("ansible-runner"))) {
    workCommands = [
      { worktype: "ansible-runner", command: "ansible-runner", params: "worker", allowruntimeparams: false, verifysignature: false, envallow: [] },
    ];
  }
  const outputCap = values["output-cap"] ?? env.MESH_OUTPUT_CAP;
  if (outputCap !== undefined) {
    if ((parseBytes(outputCap) ?? 0) < MIN_OUTPUT_CAP) fail(`--output-cap is a size of at least ${MIN_OUTPUT_CAP / 1024} KiB, such as 4MiB`);
    workCommands = workCommands.map((w) => ({ ...w, outputcap: w.outputcap ?? outputCap }));
  }
  if (workCommands.length === 0) {
    fail(configPath ? `${configPath} defines no work-command entries` : "no work types: ansible-runner is not on PATH and no --config was given");
  }

  const nodeId =
    values["node-id"] ??
    env.MESH_NODE_ID ??
    config.nodeId ??
    hostname()
      .replace(/[^A-Za-z0-9._-]/g, "-")
      .slice(0, 64);
  if (!NAME_PATTERN.test(nodeId)) fail(`node id "${nodeId}" must be 1-64 characters of [A-Za-z0-9._-]`);
  const mesh = values.mesh ?? env.MESH_ID ?? "default";
  if (!NAME_PATTERN.test(mesh)) fail(`mesh id "${mesh}" must be 1-64 characters of [A-Za-z0-9._-]`);
  const tagItems = values.tag ?? (env.MESH_TAGS ? env.MESH_TAGS.split(",").filter(Boolean) : []);
  const workDir = values["work-dir"] ?? env.MESH_WORK_DIR ?? join(homedir(), ".local", "state", "mesh-agent");

  const keyPaths = values["verify-key"] ?? (env.MESH_VERIFY_KEY ? [env.MESH_VERIFY_KEY] : config.verifyKey ? [config.verifyKey] : []);
  const verifying = workCommands.filter((w) => w.verifysignature).map((w) => w.worktype);
  if (verifying.length > 0 && keyPaths.length === 0) {
    fail(
      `work type ${verifying.join(", ")} has verifysignature: true, so give the public key its units must be signed with: --verify-key FILE, MESH_VERIFY_KEY, or a work-verification entry in the config`,
    );
  }
  const keys = await Promise.all(keyPaths.map(loadVerifyKey));
  const verifier = keys.length > 0 ? new WorkVerifier(keys, { nodeId, mesh }, new ReplayCache(join(workDir, REPLAY_FILE))) : null;

  const agent = new Agent({
    broker,
    mesh,
    token,
    nodeId,
    workDir,
    capacity: capacity(values.capacity ?? env.MESH_CAPACITY ?? String(availableParallelism())),
    tags: parseTags(tagItems),
    workCommands,
    versions: await probeVersions(packageVersion()),
    cancelGraceMs: positiveInt("--cancel-grace", values["cancel-grace"] ?? env.MESH_CANCEL_GRACE ?? "10") * 1000,
    minFreeBytes: bytesOption("--min-free", values["min-free"] ?? env.MESH_MIN_FREE),
    verifier,
    log,
    dispatcher,
    lifetime: {
      maxUnits: (values["max-units"] ?? env.MESH_MAX_UNITS) === undefined ? null : positiveInt("--max-units", (values["max-units"] ?? env.MESH_MAX_UNITS)!),
      idleExitMs: durationOption("--idle-exit", values["idle-exit"] ?? env.MESH_IDLE_EXIT),
      maxUptimeMs: durationOption("--max-uptime", values["max-uptime"] ?? env.MESH_MAX_UPTIME),
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
  log.info("agent:start", { broker, mesh, node: nodeId, workTypes: workCommands.map((w) => w.worktype), verifying, verifyKeys: keyPaths });
  await agent.run();
  if (agent.leaving) {
    log.info("agent:left", { reason: agent.leaving });
    process.exit(0);
  }
}

main(process.argv.slice(2)).catch((error: unknown) => {
  if (error instanceof UsageError || error instanceof ConfigError || error instanceof KeyError || isUsageError(error)) {
    console.error(`mesh-agent: ${error.message}`);
    console.error("Try 'mesh-agent --help'.");
    process.exit(2);
  }
  if (error instanceof AgentRefused) {
    console.error(`mesh-agent: ${error.message}`);
    process.exit(1);
  }
  console.error(`mesh-agent: ${error instanceof Error ? error.stack : String(error)}`);
  process.exit(1);
});
