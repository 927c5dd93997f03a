// @ts-check
/**
 * `#/`: the mesh's nodes and units. The lists are fetched again when the mesh's event stream says
 * something changed (debounced), and every 10 s so that ages and last-seen times stay current.
 * A chart of queue depth and pickup time samples the mesh's metrics every 10 s (chart.js). Admins
 * get Pause/Resume and Check (a health check through the node) on each connected node.
 */
import { fleetChart } from "./chart.js";
import { badge, el, table } from "./dom.js";
import { formatAge, formatDuration, unitDurationMs } from "./format.js";
import { followStream } from "./stream.js";

/** @typedef {import("./api.js").Api} Api */
/** @typedef {import("./api.js").NodeStatus} NodeStatus */
/** @typedef {import("./api.js").UnitSummary} UnitSummary */
/** @typedef {import("./api.js").Whoami} Whoami */

const REFRESH_MS = 10_000;
const DEBOUNCE_MS = 250;
/** The newest units shown; the rest are a `meshctl work list` away. */
const MAX_UNITS = 200;

/** @param {NodeStatus} node */
const nodeState = (node) =>
  node.left
    ? "left"
    : node.lost
      ? "lost"
      : node.unreachable
        ? "unreachable"
        : !node.connected
          ? "disconnected"
          : node.paused
            ? "paused"
            : "connected";

/**
 * @param {NodeStatus} node
 * @param {((node: string, action: "pause" | "resume" | "check") => void) | null} act  null: may not manage
 */
function nodeActions(node, act) {
  if (!act || !node.connected) return "–";
  const action = node.paused ? "resume" : "pause";
  return el(
    "span",
    { class: "node-actions" },
    el("button", { type: "button", onclick: () => act(node.nodeId, action) }, node.paused ? "Resume" : "Pause"),
    el("button", { type: "button", onclick: () => act(node.nodeId, "check") }, "Check"),
  );
}

/** @param {NodeStatus} node */
function healthNote(node) {
  if (!node.health) return null;
  const failed = node.health.checks.filter((c) => !c.ok);
  const title = node.health.checks.map((c) => `${c.ok ? "✓" : "✗"} ${c.name}: ${c.detail}`).join("\n");
  return el(
    "span",
    { class: failed.length ? "note health-failed" : "note", title },
    failed.length ? ` check failed: ${failed.map((c) => c.name).join(", ")}` : " check ok",
  );
}

/**
 * @param {NodeStatus} node
 * @param {number} now
 * @param {((node: string, action: "pause" | "resume" | "check") => void) | null} act
 */
function nodeRow(node, now, act) {
  const versions = [`agent ${node.versions.agent}`, `node ${node.versions.node}`];
  if (node.versions.ansibleRunner) versions.push(`ansible-runner ${node.versions.ansibleRunner}`);
  if (node.versions.podman) versions.push(`podman ${node.versions.podman}`);
  return [
    el("span", { class: "mono" }, node.nodeId),
    // Unreachable: since when, on hover. A node below its --min-free takes no units; say why beside its state.
    el(
      "span",
      node.unreachable && node.unreachableSince
        ? { title: `unreachable since ${new Date(node.unreachableSince).toLocaleString()}` }
        : {},
      badge(nodeState(node)),
      node.lowDisk ? el("span", { class: "note" }, ` ${node.lowDisk}`) : null,
      node.connected && node.hold === "leaving" ? el("span", { class: "note" }, " leaving") : null,
      healthNote(node),
    ),
    node.workTypes.map((w) => w.worktype).join(", ") || "–",
    `${node.activeUnits} / ${node.capacity}`,
    Object.entries(node.tags)
      .map(([k, v]) => `${k}=${v}`)
      .join(", ") || "–",
    versions.join(", "),
    formatAge(node.lastSeen, now),
    nodeActions(node, act),
  ];
}

/**
 * @param {UnitSummary} unit
 * @param {number} now
 */
function unitRow(unit, now) {
  return [
    el("a", { class: "mono", href: `#/units/${unit.id}` }, unit.id),
    badge(unit.state),
    unit.worktype,
    [unit.priority ? `priority ${unit.priority}` : "", ...(unit.tags ?? [])].filter(Boolean).join(", ") || "–",
    unit.node ?? "–",
    formatAge(unit.createdAt, now),
    formatDuration(unitDurationMs(unit, now) ?? Number.NaN),
    unit.detail,
  ];
}

/**
 * @param {Api} api
 * @param {Whoami} whoami
 * @returns {{ element: HTMLElement, dispose(): void }}
 */
export function overviewView(api, whoami) {
  const abort = new AbortController();
  const live = el("span", { class: "live", title: "mesh event stream" }, "connecting…");
  const summary = el("p", { class: "summary" });
  const nodes = el("section", { class: "nodes" }, el("p", { class: "empty" }, "Loading…"));
  const units = el("section", { class: "units" });
  const error = el("p", { class: "error", role: "alert" });
  const chart = fleetChart();
  /** @type {((node: string, action: "pause" | "resume" | "check") => void) | null} */
  const act = whoami.may.manage
    ? (node, action) => {
        api.nodeAction(node, action).then(
          () => refresh(),
          (e) => {
            error.textContent = e instanceof Error ? e.message : String(e);
          },
        );
      }
    : null;
  const element = el(
    "div",
    { class: "overview" },
    el("div", { class: "heading" }, el("h2", {}, "Nodes"), live),
    summary,
    error,
    chart.element,
    nodes,
    el("h2", {}, "Units"),
    units,
  );

  const refresh = async () => {
    try {
      const [status, list] = await Promise.all([api.status(), api.units()]);
      if (abort.signal.aborted) return;
      const now = Date.now();
      const sorted = [...list].sort((a, b) => b.createdAt.localeCompare(a.createdAt)).slice(0, MAX_UNITS);
      summary.textContent = `${status.nodes.filter((n) => n.connected).length} of ${status.nodes.length} nodes connected · ${status.units.running} running · ${status.units.pending} pending`;
      nodes.replaceChildren(
        table(
          ["Node", "State", "Work types", "In use", "Tags", "Versions", "Last seen", "Actions"],
          status.nodes.map((n) => nodeRow(n, now, act)),
          "No nodes have joined this mesh yet.",
        ),
      );
      units.replaceChildren(
        table(
          ["Unit", "State", "Work type", "Asks for", "Node", "Age", "Duration", "Detail"],
          sorted.map((u) => unitRow(u, now)),
          "No units yet.",
        ),
      );
      error.textContent = "";
    } catch (e) {
      if (!abort.signal.aborted) error.textContent = e instanceof Error ? e.message : String(e);
    }
  };

  /** @type {ReturnType<typeof setTimeout> | undefined} */
  let pending;
  const soon = () => {
    clearTimeout(pending);
    pending = setTimeout(refresh, DEBOUNCE_MS);
  };
  const sample = () =>
    api.metrics().then(
      (text) => abort.signal.aborted || chart.add(text),
      () => undefined,
    );
  const timer = setInterval(() => {
    refresh();
    sample();
  }, REFRESH_MS);
  refresh();
  sample();
  followStream({
    url: api.meshEventsUrl(),
    token: api.token,
    signal: abort.signal,
    onEvent: soon,
    onState: (state, detail) => {
      live.textContent =
        state === "open" ? "live" : state === "retrying" ? "reconnecting…" : `not live (${detail ?? state})`;
      live.dataset.state = state;
      if (state === "open") soon();
    },
  });

  return {
    element,
    dispose() {
      abort.abort();
      clearInterval(timer);
      clearTimeout(pending);
    },
  };
}
