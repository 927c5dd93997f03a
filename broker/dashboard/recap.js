// @ts-check
/**
 * The play recap (`PLAY RECAP` per host) from ansible-runner's `playbook_on_stats` event, whose
 * event_data holds one host → count map per column.
 */

/** The columns, in the order ansible prints them; `dark` is "unreachable". */
export const RECAP_COLUMNS = /** @type {const} */ ([
  "ok",
  "changed",
  "dark",
  "failures",
  "skipped",
  "rescued",
  "ignored",
]);

/** @typedef {{ host: string } & Record<(typeof RECAP_COLUMNS)[number], number>} RecapRow */

/**
 * @typedef {object} UnitEvent  one event of a unit's event stream
 * @property {number} seq
 * @property {"status" | "event" | "line"} kind
 * @property {string} [stdout]
 * @property {string} [event]
 * @property {Record<string, unknown>} [data]
 */

/**
 * The recap rows (hosts sorted by name) if `event` is a playbook_on_stats event, else null.
 * @param {UnitEvent} event
 * @returns {RecapRow[] | null}
 */
export function playRecap(event) {
  const name = event.event ?? event.data?.event;
  if (event.kind !== "event" || name !== "playbook_on_stats") return null;
  const data = event.data?.event_data;
  if (typeof data !== "object" || data === null) return null;
  const columns = /** @type {Record<string, unknown>} */ (data);
  /** @type {Set<string>} */
  const hosts = new Set();
  for (const column of RECAP_COLUMNS) {
    const counts = columns[column];
    if (typeof counts === "object" && counts !== null) for (const host of Object.keys(counts)) hosts.add(host);
  }
  return [...hosts].sort().map((host) => {
    const row = /** @type {RecapRow} */ ({ host });
    for (const column of RECAP_COLUMNS) {
      const count = /** @type {Record<string, unknown> | undefined} */ (columns[column])?.[host];
      row[column] = typeof count === "number" ? count : 0;
    }
    return row;
  });
}
