/**
 * What the work command of a unit runs as: its argv from the work type's params and the unit's
 * runtime params (split like a shell would, expanding nothing), and its whole environment.
 */
import { parse as parseShell } from "shell-quote";
import type { WorkCommand } from "./config.js";
import { unitEnvironment } from "./unit-env.js";

/** Command-line arguments of a work command: its params, then runtime params where allowed. */
export function commandArgs(
  work: WorkCommand,
  unitParams: Record<string, string>,
): { args: string[] } | { error: string } {
  const runtime = unitParams.params ?? "";
  if (runtime !== "" && !work.allowruntimeparams)
    return { error: `work type ${work.worktype} does not allow runtime params` };
  const texts = runtime === "" ? [work.params] : [work.params, runtime];
  // shell-quote drops the braces of ${X} before we could keep it literal; refuse rather than alter it.
  if (texts.some((t) => t.includes("${"))) return { error: "params may not contain ${…}" };
  if (texts.some((t) => t.includes("\0"))) return { error: "params may not contain NUL bytes" };
  // Split like a shell would, but expand nothing: `$X` stays literal, as no shell ever runs.
  const words = texts.flatMap((text) => parseShell(text, (name) => `$${name}`));
  const args = words.filter((w): w is string => typeof w === "string");
  if (args.length !== words.length) return { error: "params may not contain shell operators, globs or comments" };
  return { args };
}

export interface CommandLine {
  command: string;
  args: string[];
  /** The command's whole environment: nothing of the agent's is passed otherwise. */
  env: Record<string, string>;
}

/**
 * The unit's command line, or why it may not run. `agentEnv` is the agent's own environment, of
 * which the unit gets unit-env.ts's defaults and the work type's envallow, never `secrets`.
 */
export function commandLine(
  work: WorkCommand,
  unitParams: Record<string, string>,
  agentEnv: NodeJS.ProcessEnv,
  secrets: string[],
): CommandLine | { error: string } {
  const args = commandArgs(work, unitParams);
  if ("error" in args) return args;
  return { command: work.command, args: args.args, env: unitEnvironment(agentEnv, work.envallow, secrets) };
}
