/**
 * What a unit asks of its placement besides a work type and a node: tags and a priority.
 *
 * Tag selectors: a unit may ask for nodes by their tags (`--tag k=v`, `?tag=k=v`). Every item must
 * match: `k=v` wants tag k with value v, `k` alone wants tag k with any value. A selector is kept
 * as its items, deduplicated and sorted, so two spellings of one selector are one queue class and
 * one idempotent request.
 */
import { type Result, fail, ok } from "./errors.js";

/** Tag keys as agents may advertise them; values are free text up to MAX_TAG_VALUE. */
const KEY_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._/-]{0,63}$/;
const MAX_TAG_VALUE = 256;
export const MAX_SELECTOR_ITEMS = 16;

export type TagSelector = readonly string[];

/** Checks and normalises `k=v` / `k` items. */
export function parseTagSelector(items: readonly string[]): Result<string[]> {
  if (items.length > MAX_SELECTOR_ITEMS)
    return fail("bad_request", `a unit may ask for at most ${MAX_SELECTOR_ITEMS} tags`);
  const seen = new Set<string>();
  for (const item of items) {
    const eq = item.indexOf("=");
    const key = eq < 0 ? item : item.slice(0, eq);
    const value = eq < 0 ? "" : item.slice(eq + 1);
    if (!KEY_PATTERN.test(key))
      return fail("bad_request", `tag "${item}": the key must be 1-64 characters of [A-Za-z0-9._/-]; use k=v or k`);
    // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what a value may not hold.
    if (value.length > MAX_TAG_VALUE || /[\x00-\x1f]/.test(value))
      return fail("bad_request", `tag "${key}": the value must be at most ${MAX_TAG_VALUE} printable characters`);
    seen.add(item);
  }
  const keys = new Map<string, string>();
  for (const item of seen) {
    const key = item.split("=", 1)[0]!;
    const other = keys.get(key);
    // `k=a` with `k=b` can never match; `k` with `k=a` is just `k=a`.
    if (other?.includes("=") && item.includes("="))
      return fail("bad_request", `tags ${other} and ${item} can never both match`);
    if (other === undefined || item.includes("=")) keys.set(key, item);
  }
  return ok([...keys.values()].sort());
}

/** Whether a node with `tags` satisfies every item of `selector`. */
export function matchesTags(selector: TagSelector, tags: Readonly<Record<string, string>>): boolean {
  for (const item of selector) {
    const eq = item.indexOf("=");
    if (eq < 0) {
      if (!Object.hasOwn(tags, item)) return false;
    } else if (!Object.hasOwn(tags, item.slice(0, eq)) || tags[item.slice(0, eq)] !== item.slice(eq + 1)) return false;
  }
  return true;
}

/** Priorities run from MIN_PRIORITY to MAX_PRIORITY; higher runs first, 0 is the default. */
export const MIN_PRIORITY = -1000;
export const MAX_PRIORITY = 1000;

export function parsePriority(raw: string | undefined): Result<number> {
  if (raw === undefined || raw === "") return ok(0);
  if (!/^-?\d{1,4}$/.test(raw) || Number(raw) < MIN_PRIORITY || Number(raw) > MAX_PRIORITY) {
    return fail("bad_request", `priority must be an integer from ${MIN_PRIORITY} to ${MAX_PRIORITY}, got "${raw}"`);
  }
  return ok(Number(raw));
}
