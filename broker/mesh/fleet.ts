/**
 * Fleet decisions the Mesh object asks about, as pure functions: whether a tagged unit could ever
 * be placed, and why a node takes no new units (its hold).
 */
import { type Result, fail, ok } from "../../shared/errors.js";
import { type HealthReport, healthFailure } from "../../shared/health.js";
import { matchesTags } from "../../shared/placement.js";

export interface KnownNode {
  id: string;
  workTypes: ReadonlySet<string>;
  tags: Readonly<Record<string, string>>;
}

/**
 * A unit with tags that no node of the mesh (connected or known, not removed) matches would wait
 * for ever, as a typo does: refused, unless it has a ttl to wait for such a node to join. Checked
 * after the work type and target node (the Mesh object's older checks).
 */
export function admitTags(
  unit: { mesh: string; worktype: string; targetNode: string | null; tags: readonly string[]; ttlMs: number | null },
  nodes: readonly KnownNode[],
): Result<void> {
  if (unit.tags.length === 0 || unit.ttlMs !== null) return ok(undefined);
  const fits = nodes.some(
    (n) =>
      n.workTypes.has(unit.worktype) &&
      (unit.targetNode === null || n.id === unit.targetNode) &&
      matchesTags(unit.tags, n.tags),
  );
  if (fits) return ok(undefined);
  const where =
    unit.targetNode === null ? `no node of mesh ${unit.mesh} offering ${unit.worktype}` : `node ${unit.targetNode}`;
  const want = `${unit.targetNode === null ? "has" : "lacks"} tags ${unit.tags.join(", ")}`;
  return fail("no_matching_node", `${where} ${want}; check them, or give a ttl to wait for such a node`);
}

export interface NodeFlags {
  paused: boolean;
  /** The agent said it is leaving (one-shot, --idle-exit, draining): until it says hello again. */
  leaving: boolean;
  /** Its last health check failed (health.ts), with what failed. */
  unhealthy: string | null;
}

/** The nodes table's columns behind a node's flags (node-rows.ts), and the flags they mean. */
export type FlagColumns = { paused: number; left_at: number | null; health: string | null };
export const FLAG_COLUMNS = "paused, left_at, health";

export function storedFlags(row: FlagColumns): NodeFlags {
  return {
    paused: row.paused === 1,
    leaving: row.left_at !== null,
    unhealthy: row.health ? healthFailure(JSON.parse(row.health) as HealthReport) : null,
  };
}

/** Why the node takes no new units (dispatch.ts `hold`), or null. Running units are never touched. */
export function nodeHold(flags: NodeFlags): string | null {
  if (flags.leaving) return "leaving";
  if (flags.paused) return "paused";
  if (flags.unhealthy) return `health check failed: ${flags.unhealthy}`;
  return null;
}

/**
 * Whether a disconnected node is shown as `left` rather than judged by its silence: it said it was
 * leaving, held no unit when it went, and no outage was recorded since. An agent that dies while
 * leaving with units still on it crashed: it is unreachable, then lost, like any other.
 */
export function leftCleanly(node: {
  connected: boolean;
  leftAt: number | null;
  activeUnits: number;
  outageSince: number | null;
}): boolean {
  return !node.connected && node.leftAt !== null && node.activeUnits === 0 && node.outageSince === null;
}
