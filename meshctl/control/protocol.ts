/**
 * receptor's control-service line protocol, parsed and formatted without I/O (controlsvc and
 * workceptor/controlsvc.go): a command is one line, either words (`work list`) or a JSON object
 * with a "command" key; replies are one JSON line or `ERROR: <message>`. Error texts are receptor's
 * where it has one, because clients match on them (receptor's own relay looks for
 * "unknown work unit").
 */
import { NAME_PATTERN } from "../../shared/ids.js";

export type Command =
  | { kind: "status"; requestedFields: string[] | null }
  | { kind: "ping"; target: string }
  | { kind: "reload" }
  | {
      kind: "work-submit";
      node: string;
      worktype: string;
      params: Record<string, string>;
      ttl: string | null;
      signwork: boolean;
    }
  | { kind: "work-list"; unitId: string | null }
  | { kind: "work-status" | "work-cancel" | "work-release" | "work-force-release"; unitId: string }
  | { kind: "work-results"; unitId: string; startpos: number };

export type Parsed = { ok: true; command: Command } | { ok: false; error: string };

const ok = (command: Command): Parsed => ({ ok: true, command });
const error = (message: string): Parsed => ({ ok: false, error: message });

/** Keys of a JSON `work submit` that are not passed on as params (receptor's nonParams). */
const SUBMIT_FIELDS = new Set([
  "command",
  "subcommand",
  "node",
  "worktype",
  "tlsclient",
  "ttl",
  "signwork",
  "signature",
]);
/** receptor commands this bridge has no mesh of its own for. */
const UNSUPPORTED = new Set(["connect", "traceroute"]);

export function greeting(nodeId: string): string {
  return `Receptor Control, node ${nodeId}\n`;
}

export function errorLine(message: string): string {
  return `ERROR: ${message.replace(/[\r\n]+/g, " ")}\n`;
}

export function submitCreatedLine(unitId: string): string {
  return `Work unit created with ID ${unitId}. Send stdin data and EOF.\n`;
}

export function resultsHeaderLine(unitId: string): string {
  return `Streaming results for work unit ${unitId}\n`;
}

/**
 * One command line, without its "\n" (receptor also drops every "\r"). Empty lines are skipped
 * by the caller, as receptor does.
 */
export function parseCommand(line: string): Parsed {
  if (line.startsWith("{")) return parseJson(line);
  const space = line.indexOf(" ");
  const verb = (space < 0 ? line : line.slice(0, space)).toLowerCase();
  const rest = space < 0 ? "" : line.slice(space + 1);
  switch (verb) {
    case "status":
      return rest === ""
        ? ok({ kind: "status", requestedFields: null })
        : error("status command does not take parameters");
    case "ping":
      return rest === "" ? error("no ping target") : ok({ kind: "ping", target: rest });
    case "reload":
      return ok({ kind: "reload" });
    case "work":
      return parseWorkWords(rest.split(" "));
    default:
      return unknown(verb);
  }
}

function unknown(verb: string): Parsed {
  return UNSUPPORTED.has(verb)
    ? error(`${verb} is not supported by meshctl control-service`)
    : error("Unknown command");
}

function parseWorkWords(tokens: string[]): Parsed {
  const sub = tokens[0]!.toLowerCase();
  switch (sub) {
    case "submit":
      if (tokens.length < 3) return error("work submit requires a target node and work type");
      return submit({
        node: tokens[1]!,
        worktype: tokens[2]!,
        ...(tokens.length > 3 ? { params: tokens.slice(3).join(" ") } : {}),
      });
    case "list":
      return ok({ kind: "work-list", unitId: tokens[1] ?? null });
    case "status":
    case "cancel":
    case "release":
    case "force-release":
      if (tokens.length < 2) return error(`work ${sub} requires a unit ID`);
      if (tokens.length > 2) return error(`work ${sub} does not take parameters after the unit ID`);
      return ok({ kind: `work-${sub}`, unitId: tokens[1]! });
    case "results": {
      if (tokens.length < 2) return error("work results requires a unit ID");
      if (tokens.length > 3) return error("work results only takes a unit ID and optional start position");
      const startpos = tokens.length > 2 ? startPosition(tokens[2]!) : 0;
      return startpos === null
        ? error(`error converting start position to integer: ${tokens[2]}`)
        : ok({ kind: "work-results", unitId: tokens[1]!, startpos });
    }
    default:
      return error("bad command");
  }
}

function parseJson(line: string): Parsed {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch (e) {
    return error(`invalid JSON command: ${e instanceof Error ? e.message : String(e)}`);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value))
    return error("invalid JSON command: not an object");
  const json = value as Record<string, unknown>;
  if (!("command" in json)) return error("JSON did not contain a command");
  if (typeof json.command !== "string") return error("command must be a string");
  // receptor lower-cases word commands only; JSON ones must match exactly.
  switch (json.command) {
    case "status":
      return parseStatusJson(json.requested_fields);
    case "ping":
      if (!("target" in json)) return error("no ping target");
      return typeof json.target === "string"
        ? ok({ kind: "ping", target: json.target })
        : error("ping target must be string");
    case "reload":
      return ok({ kind: "reload" });
    case "work":
      return parseWorkJson(json);
    default:
      return unknown(json.command);
  }
}

function parseStatusJson(fields: unknown): Parsed {
  if (fields === undefined) return ok({ kind: "status", requestedFields: null });
  if (!Array.isArray(fields) || fields.some((f) => typeof f !== "string"))
    return error("each element of requested_fields must be a string");
  return ok({ kind: "status", requestedFields: fields as string[] });
}

function field(json: Record<string, unknown>, name: string): string | { missing: string } {
  const value = json[name];
  if (value === undefined) return { missing: `field ${name} missing` };
  return typeof value === "string" ? value : { missing: `field ${name} must be a string` };
}

function parseWorkJson(json: Record<string, unknown>): Parsed {
  const sub = field(json, "subcommand");
  if (typeof sub !== "string") return error(sub.missing);
  const subcommand = sub.toLowerCase();
  if (subcommand === "submit") {
    for (const [key, value] of Object.entries(json)) {
      if (typeof value !== "string") return error(`submit parameters must all be strings and ${key} is not`);
    }
    return submit(json as Record<string, string>);
  }
  if (subcommand === "list") {
    return ok({ kind: "work-list", unitId: typeof json.unitid === "string" ? json.unitid : null });
  }
  if (!["status", "cancel", "release", "force-release", "results"].includes(subcommand)) return error("bad command");
  const unitId = field(json, "unitid");
  if (typeof unitId !== "string") return error(unitId.missing);
  if (subcommand !== "results") return ok({ kind: `work-${subcommand as "status"}`, unitId });
  if (json.startpos === undefined) return error("field startpos missing");
  // receptor takes a number or a numeric string here.
  const startpos =
    typeof json.startpos === "number"
      ? Number.isInteger(json.startpos) && json.startpos >= 0
        ? json.startpos
        : null
      : typeof json.startpos === "string"
        ? startPosition(json.startpos)
        : null;
  return startpos === null
    ? error(`field startpos value ${JSON.stringify(json.startpos)} is not convertible to an int`)
    : ok({ kind: "work-results", unitId, startpos });
}

function startPosition(text: string): number | null {
  return /^\d{1,15}$/.test(text) ? Number(text) : null;
}

/** Checks what the broker would refuse after the whole payload was sent, so it is refused before. */
function submit(fields: Record<string, string>): Parsed {
  const node = field(fields, "node");
  if (typeof node !== "string") return error(node.missing);
  const worktype = field(fields, "worktype");
  if (typeof worktype !== "string") return error(worktype.missing);
  if (!NAME_PATTERN.test(worktype))
    return error(`unknown work type ${worktype}: work type names are 1-64 characters of [A-Za-z0-9._-]`);
  if (node !== "" && !NAME_PATTERN.test(node))
    return error(`invalid node ID ${node}: node ids are 1-64 characters of [A-Za-z0-9._-]`);
  const params: Record<string, string> = {};
  for (const [key, value] of Object.entries(fields)) if (!SUBMIT_FIELDS.has(key)) params[key] = value;
  return ok({
    kind: "work-submit",
    node,
    worktype,
    params,
    ttl: fields.ttl || null,
    // receptor reads anything but "true" as false.
    signwork: fields.signwork === "true",
  });
}
