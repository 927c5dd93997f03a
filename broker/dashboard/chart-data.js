// @ts-check
/**
 * The numbers behind the overview's chart (chart.js), without the DOM: the few series read from the
 * metrics text, one point per sample, and the SVG path of a line.
 */

export const SAMPLES = 90;
/**
 * The few series the chart needs from the exposition text; other lines are skipped.
 * @param {string} text
 * @returns {{ queued: number, pickupSum: number, pickupCount: number }}
 */
export function readMetrics(text) {
  let queued = 0;
  let pickupSum = 0;
  let pickupCount = 0;
  for (const line of text.split("\n")) {
    const match = /^(mesh_queue_depth|mesh_pickup_seconds_sum|mesh_pickup_seconds_count)(?:\{.*\})? (\S+)$/.exec(line);
    if (!match) continue;
    const value = Number(match[2]);
    if (!Number.isFinite(value)) continue;
    if (match[1] === "mesh_queue_depth") queued += value;
    else if (match[1] === "mesh_pickup_seconds_sum") pickupSum += value;
    else pickupCount += value;
  }
  return { queued, pickupSum, pickupCount };
}

/**
 * The next point of the chart from two readings: queue depth now, mean pickup of the units assigned
 * in between (null when none was).
 * @param {{ pickupSum: number, pickupCount: number } | null} before
 * @param {{ queued: number, pickupSum: number, pickupCount: number }} now
 * @returns {{ queued: number, pickup: number | null }}
 */
export function samplePoint(before, now) {
  const count = before ? now.pickupCount - before.pickupCount : 0;
  const pickup = count > 0 && before ? (now.pickupSum - before.pickupSum) / count : null;
  return { queued: now.queued, pickup };
}

/**
 * SVG path data for `values` scaled into width × height (null values break the line).
 * @param {(number | null)[]} values
 * @param {number} width
 * @param {number} height
 * @returns {string}
 */
export function linePath(values, width, height) {
  const max = Math.max(1, ...values.filter((v) => v !== null).map(Number));
  const step = values.length > 1 ? width / (SAMPLES - 1) : 0;
  const start = width - step * (values.length - 1);
  let path = "";
  let pen = false;
  values.forEach((v, i) => {
    if (v === null) {
      pen = false;
      return;
    }
    const x = (start + i * step).toFixed(1);
    const y = (height - (v / max) * (height - 2) - 1).toFixed(1);
    const next = values[i + 1];
    // A point with no neighbour on its right starts no line: a zero-length one, drawn as a dot.
    path += pen ? `L${x} ${y}` : `M${x} ${y}${next === null || next === undefined ? "l0 0" : ""}`;
    pen = true;
  });
  return path;
}
