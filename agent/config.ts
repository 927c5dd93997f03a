/**
 * Work types from a receptor-style YAML config: a list of single-key entries, of which this agent
 * reads `node` (its id), `work-command` (worktype, command, params, allowruntimeparams,
 * verifysignature, and the agent's own envallow) and `work-verification` (publickey: the Ed25519 key signed units must verify
 * with). Other receptor entries are reported once as ignored, so an existing receptor.conf works as
 * it is.
 */
import { readFile } from "node:fs/promises";
import { homedir } from "node:os";
import { join } from "node:path";
import { parse as parseYaml } from "yaml";
import { z } from "zod";
import { NAME_PATTERN } from "../shared/ids.js";
import { DEFAULT_MIN_FREE_BYTES, parseBytes } from "../shared/disk.js";
import { parseDuration } from "../shared/duration.js";
import { CliError, EXIT_USAGE, usage } from "../shared/node/cli.js";
import { MIN_OUTPUT_CAP } from "../shared/output-cap.js";
import { MAX_CAPACITY } from "../shared/protocol.js";

export const WorkCommand = z
  .object({
    worktype: z.string().regex(NAME_PATTERN, "work type names are 1-64 characters of [A-Za-z0-9._-]"),
    command: z.string().min(1),
    params: z.string().default(""),
    allowruntimeparams: z.boolean().default(false),
    verifysignature: z.boolean().default(false),
    /**
     * A payload of at most 32 KiB may come inside the assignment, and the unit starts at once (no
     * round trip first). The price: from its assignment the broker counts the unit as possibly
     * started, so a node that goes silent or is removed then fails it rather than losing it to
     * another node (it never runs twice). Off by default.
     */
    inlinestart: z.boolean().optional(),
    /**
     * The command reads a self-delimiting stream that does nothing before its end marker and fails
     * on a cut one, so it may start while the payload is still being uploaded (streamsPayload).
     * Absent: on for `ansible-runner worker`, off for anything else.
     */
    streamingpayload: z.boolean().optional(),
    /**
     * The agent keeps one instance of the command started ahead, waiting on its stdin, and hands it
     * the next unit whose command line is the same (warm.ts): the command's own startup (Python's
     * and ansible-runner's imports: ~0.4 s) is not on the unit's path. Needs a streaming payload
     * (streamsPayload): the command reads its stdin as it comes. Off by default: it holds a process
     * (~50 MiB for ansible-runner) while the node is idle.
     */
    warmstart: z.boolean().optional(),
    /** Environment variables the command gets besides unit-env.ts's defaults: names, or prefixes ending in `*`. */
    envallow: z
      .array(
        z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*\*?$/, "envallow entries are variable names, or prefixes ending in *"),
      )
      .default([]),
    /** The agent's own: keep about this much of a unit's results, head and tail (shared/output-cap.ts), e.g. 4MiB. */
    outputcap: z
      .string()
      .refine(
        (text) => (parseBytes(text) ?? 0) >= MIN_OUTPUT_CAP,
        `outputcap is a size of at least ${MIN_OUTPUT_CAP / 1024} KiB, such as 4MiB`,
      )
      .optional(),
  })
  // A misspelt key (allowRuntimeParams) would silently keep a default: refuse it instead.
  .strict();
export type WorkCommand = z.infer<typeof WorkCommand>;

/**
 * Whether units of this work type may start on a payload still streaming in. ansible-runner's
 * worker reads JSON records and runs nothing before its `{"eof": true}` record; a stream cut before
 * it fails ("Failed to JSON parse a line from transmit stream") before any task (2.3.1,
 * streaming.py Worker.run). `worker cleanup` reads no payload. A signature covers the whole
 * payload, so a work type that verifies one never starts early.
 */
export function streamsPayload(
  w: Pick<WorkCommand, "command" | "params" | "streamingpayload" | "verifysignature">,
): boolean {
  if (w.verifysignature) return false;
  if (w.streamingpayload !== undefined) return w.streamingpayload;
  const words = w.params.trim().split(/\s+/);
  return w.command.split("/").pop() === "ansible-runner" && words[0] === "worker" && words[1] !== "cleanup";
}

export interface FileConfig {
  nodeId: string | null;
  workCommands: WorkCommand[];
  /** receptor's `work-verification: {publickey: PATH}` (or the bare path). */
  verifyKey: string | null;
  ignored: string[];
}

/** A config file that cannot be used as it is: exits 2, as a wrong option does. */
export class ConfigError extends CliError {
  override name = "ConfigError";
  constructor(message: string) {
    super("MESH_ERR_CONFIG", message, EXIT_USAGE);
  }
}

export function parseConfig(text: string, source = "config"): FileConfig {
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (error) {
    throw new ConfigError(`${source}: not valid YAML (${error instanceof Error ? error.message : String(error)})`);
  }
  if (doc === null || doc === undefined) doc = [];
  if (!Array.isArray(doc))
    throw new ConfigError(`${source}: expected a list of entries such as "- work-command: {...}"`);
  const config: FileConfig = { nodeId: null, workCommands: [], verifyKey: null, ignored: [] };
  doc.forEach((entry: unknown, index) => {
    if (typeof entry !== "object" || entry === null || Array.isArray(entry) || Object.keys(entry).length !== 1) {
      throw new ConfigError(`${source}: entry ${index + 1} must be a mapping with one key, like "work-command:"`);
    }
    const [key, value] = Object.entries(entry)[0]!;
    if (key === "work-command") {
      const parsed = WorkCommand.safeParse(value);
      if (!parsed.success) {
        const issue = parsed.error.issues[0];
        throw new ConfigError(
          `${source}: work-command ${index + 1}: ${issue?.path.join(".") || "entry"}: ${issue?.message}`,
        );
      }
      if (config.workCommands.some((w) => w.worktype === parsed.data.worktype)) {
        throw new ConfigError(`${source}: work type ${parsed.data.worktype} is defined twice`);
      }
      if (parsed.data.streamingpayload && parsed.data.verifysignature) {
        throw new ConfigError(
          `${source}: work type ${parsed.data.worktype}: streamingpayload cannot go with verifysignature (a signature covers the whole payload)`,
        );
      }
      if (parsed.data.warmstart && !streamsPayload(parsed.data)) {
        throw new ConfigError(
          `${source}: work type ${parsed.data.worktype}: warmstart needs a command that reads a self-delimiting stdin as it comes (streamingpayload)`,
        );
      }
      config.workCommands.push(parsed.data);
    } else if (key === "node") {
      const id = (value as { id?: unknown } | null)?.id;
      if (typeof id !== "string" || !NAME_PATTERN.test(id))
        throw new ConfigError(`${source}: node.id must be 1-64 characters of [A-Za-z0-9._-]`);
      config.nodeId = id;
    } else if (key === "work-verification") {
      const path = typeof value === "string" ? value : (value as { publickey?: unknown } | null)?.publickey;
      if (typeof path !== "string" || path === "")
        throw new ConfigError(`${source}: work-verification needs publickey: PATH (an Ed25519 public key in PEM)`);
      config.verifyKey = path;
    } else {
      config.ignored.push(key);
    }
  });
  return config;
}

export async function loadConfig(path: string): Promise<FileConfig> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (error) {
    throw new ConfigError(`cannot read config ${path}: ${error instanceof Error ? error.message : String(error)}`);
  }
  return parseConfig(text, path);
}

/** The agent's defaults, each written once: the option parsing and the help text (cli.ts) read them. */
export const AGENT_DEFAULTS = {
  mesh: "default",
  logLevel: "info",
  /** SIGINT→SIGKILL grace on cancel, in seconds. */
  cancelGraceSeconds: 10,
  minFreeBytes: DEFAULT_MIN_FREE_BYTES,
  workDir: join(homedir(), ".local", "state", "mesh-agent"),
} as const;

/** The work type an agent without --config offers when ansible-runner is on PATH, as receptor's default. */
export const ANSIBLE_RUNNER_WORK: WorkCommand = {
  worktype: "ansible-runner",
  command: "ansible-runner",
  params: "worker",
  allowruntimeparams: false,
  verifysignature: false,
  envallow: [],
};

/** A setting's raw value and where it came from (the flag, else its environment variable), for errors that name it. */
export interface Setting {
  raw: string;
  from: string;
}

/** The flag's value, else the environment variable's, else undefined. */
export function setting(
  flagValue: string | undefined,
  flag: string,
  env: NodeJS.ProcessEnv,
  variable: string,
): Setting | undefined {
  if (flagValue !== undefined) return { raw: flagValue, from: flag };
  const raw = env[variable];
  return raw === undefined ? undefined : { raw, from: variable };
}

export function positiveInt(value: Setting): number {
  if (!/^\d+$/.test(value.raw) || Number(value.raw) < 1)
    usage(`${value.from} must be a positive integer, got "${value.raw}"`);
  return Number(value.raw);
}

/**
 * "unlimited" is receptor's behaviour (it starts whatever it is sent; AWX sizes nodes itself from
 * --worker-info): the largest capacity a hello may declare, so the broker never holds a unit back.
 */
export function capacity(value: Setting): number {
  if (value.raw === "unlimited") return MAX_CAPACITY;
  const n = positiveInt(value);
  if (n > MAX_CAPACITY) usage(`${value.from} is at most ${MAX_CAPACITY}, or "unlimited"`);
  return n;
}

export function duration(value: Setting): number {
  const parsed = parseDuration(value.raw);
  return parsed.ok ? parsed.value : usage(`${value.from}: ${parsed.error.message}`);
}

/** An output cap (shared/output-cap.ts): a size of at least MIN_OUTPUT_CAP. */
export function outputCap(value: Setting): number {
  const size = parseBytes(value.raw);
  return size !== null && size >= MIN_OUTPUT_CAP
    ? size
    : usage(`${value.from} is a size of at least ${MIN_OUTPUT_CAP / 1024} KiB, such as 4MiB, got "${value.raw}"`);
}

export function bytes(value: Setting): number {
  return parseBytes(value.raw) ?? usage(`${value.from} takes a size such as 256MiB, 1G or 500MB, got "${value.raw}"`);
}
