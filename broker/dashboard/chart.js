// @ts-check
/**
 * The overview's live chart of queue depth and pickup time, read from the mesh's own metrics
 * (`GET …/metrics`, the text Prometheus scrapes): one sample per refresh, the last SAMPLES kept in
 * memory. Pickup time is the mean of the units assigned since the previous sample (Δsum / Δcount of
 * the pickup histogram), so the line shows what waiting looks like now, not since the broker began.
 */
import { SAMPLES, linePath, readMetrics, samplePoint } from "./chart-data.js";
import { el } from "./dom.js";

const SVG = "http://www.w3.org/2000/svg";

/**
 * @param {string} label
 * @param {string} cls
 */
function sparkline(label, cls) {
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", "0 0 300 40");
  svg.setAttribute("preserveAspectRatio", "none");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", label);
  const line = document.createElementNS(SVG, "path");
  line.setAttribute("class", cls);
  svg.append(line);
  const value = el("span", { class: "chart-value" }, "–");
  return { element: el("figure", { class: "chart" }, el("figcaption", {}, label, " ", value), svg), line, value };
}

/** @returns {{ element: HTMLElement, add(text: string): void }} */
export function fleetChart() {
  const depth = sparkline("Queue depth", "queue");
  const pickup = sparkline("Pickup time (s)", "pickup");
  /** @type {{ queued: number, pickup: number | null }[]} */
  const points = [];
  /** @type {{ pickupSum: number, pickupCount: number } | null} */
  let last = null;
  return {
    element: el("section", { class: "charts" }, depth.element, pickup.element),
    add(text) {
      const now = readMetrics(text);
      points.push(samplePoint(last, now));
      last = now;
      if (points.length > SAMPLES) points.shift();
      depth.line.setAttribute(
        "d",
        linePath(
          points.map((p) => p.queued),
          300,
          40,
        ),
      );
      pickup.line.setAttribute(
        "d",
        linePath(
          points.map((p) => p.pickup),
          300,
          40,
        ),
      );
      depth.value.textContent = String(now.queued);
      const seen = points.findLast((p) => p.pickup !== null);
      pickup.value.textContent = seen?.pickup == null ? "–" : seen.pickup.toFixed(2);
    },
  };
}
