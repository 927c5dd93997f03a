/**
 * Work types from a receptor-style YAML config: a list of single-key entries, of which this agent
 * reads `node` (its id), `work-command` (worktype, command, params, allowruntimeparams,
 * verifysignature, and the agent's own envallow) and `work-verification` (publickey: the Ed25519 key signed units must verify
 * with). Other receptor entries are reported once as ignored, so an existing receptor.conf works as
 * it is.
 */
import { readFile } from "node:fs/promises";
import { parse as parseYaml } from "yaml";
import { z } from "zod";
import { parseBytes } from "../shared/disk.js";
import { NAME_PATTERN } from "../shared/ids.js";
import { MIN_OUTPUT_CAP } from "../shared/output-cap.js";

export const WorkCommand = z
  .object({
    worktype: z.string().regex(NAME_PATTERN, "work type names are 1-64 characters of [A-Za-z0-9._-]"),
    command: z.string().min(1),
    params: z.string().default(""),
    allowruntimeparams: z.boolean().default(false),
    verifysignature: z.boolean().default(false),
    /** Environment variables the command gets besides unit-env.ts's defaults: names, or prefixes ending in `*`. */
    envallow: z.array(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*\*?$/, "envallow entries are variable names, or prefixes ending in *")).default([]),
    /** The agent's own: keep about this much of a unit's results, head and tail (shared/output-cap.ts), e.g. 4MiB. */
    outputcap: z
      .string()
      .refine((text) => (parseBytes(text) ?? 0) >= MIN_OUTPUT_CAP, `outputcap is a size of at least ${MIN_OUTPUT_CAP / 1024} KiB, such as 4MiB`)
      .optional(),
  })
  // A misspelt key (allowRuntimeParams) would silently keep a default: refuse it instead.
  .strict();
export type WorkCommand = z.infer<typeof WorkCommand>;

export interface FileConfig {
  nodeId: string | null;
  workCommands: WorkCommand[];
  /** receptor's `work-verification: {publickey: PATH}` (or the bare path). */
  verifyKey: string | null;
  ignored: string[];
}

export class ConfigError extends Error {
  override name = "ConfigError";
}

export function parseConfig(text: string, source = "config"): FileConfig {
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (error) {
    throw new ConfigError(`${source}: not valid YAML (${error instanceof Error ? error.message : String(error)})`);
  }
  if (doc === null || doc === undefined) doc = [];
  if (!Array.isArray(doc)) throw new ConfigError(`${source}: expected a list of entries such as "- work-command: {...}"`);
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
        throw new ConfigError(`${source}: work-command ${index + 1}: ${issue?.path.join(".") || "entry"}: ${issue?.message}`);
      }
      if (config.workCommands.some((w) => w.worktype === parsed.data.worktype)) {
        throw new ConfigError(`${source}: work type ${parsed.data.worktype} is defined twice`);
      }
      config.workCommands.push(parsed.data);
    } else if (key === "node") {
      const id = (value as { id?: unknown } | null)?.id;
      if (typeof id !== "string" || !NAME_PATTERN.test(id)) throw new ConfigError(`${source}: node.id must be 1-64 characters of [A-Za-z0-9._-]`);
      config.nodeId = id;
    } else if (key === "work-verification") {
      const path = typeof value === "string" ? value : (value as { publickey?: unknown } | null)?.publickey;
      if (typeof path !== "string" || path === "") throw new ConfigError(`${source}: work-verification needs publickey: PATH (an Ed25519 public key in PEM)`);
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
