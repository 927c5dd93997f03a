// @ts-check
/**
 * `#/units/ID`: one unit's record, its live output and play recap from the unit's event stream,
 * Cancel and Release for tokens that may submit, and its artifacts as a download.
 */
import { badge, el, table } from "./dom.js";
import { FINAL_STATES, formatDuration, unitDurationMs } from "./format.js";
import { outputPanel } from "./output.js";
import { RECAP_COLUMNS, playRecap } from "./recap.js";
import { followStream } from "./stream.js";

/** @typedef {import("./api.js").Api} Api */
/** @typedef {import("./api.js").Whoami} Whoami */
/** @typedef {import("./api.js").UnitRecord} UnitRecord */
/** @typedef {import("./recap.js").UnitEvent} UnitEvent */

const RECAP_TITLES = {
  ok: "ok",
  changed: "changed",
  dark: "unreachable",
  failures: "failed",
  skipped: "skipped",
  rescued: "rescued",
  ignored: "ignored",
};

/** @param {string | null} iso */
const time = (iso) => (iso ? new Date(iso).toLocaleString() : "–");

/**
 * @param {Api} api
 * @param {Whoami} whoami
 * @param {string} id
 * @returns {{ element: HTMLElement, dispose(): void }}
 */
export function unitView(api, whoami, id) {
  const abort = new AbortController();
  const output = outputPanel();
  const state = el("span", { class: "unit-state" });
  const live = el("span", { class: "live" }, "connecting…");
  const record = el("dl", { class: "record" });
  const actions = el("div", { class: "actions" });
  const message = el("p", { class: "error", role: "alert" });
  const recap = el("section", { class: "recap", hidden: true });
  const element = el(
    "div",
    { class: "unit" },
    el("p", {}, el("a", { href: "#/" }, "← all units")),
    el("div", { class: "heading" }, el("h2", {}, "Unit ", el("span", { class: "mono" }, id)), state),
    record,
    actions,
    message,
    recap,
    el("div", { class: "heading" }, el("h2", {}, "Output"), live),
    output.element,
  );

  /** @param {unknown} e */
  const fail = (e) => {
    if (!abort.signal.aborted) message.textContent = e instanceof Error ? e.message : String(e);
  };

  /** @param {UnitRecord} unit */
  const render = (unit) => {
    const now = Date.now();
    state.replaceChildren(badge(unit.state));
    const rows = /** @type {[string, string][]} */ ([
      ["State", unit.state],
      ["Node", unit.node ?? "–"],
      ["Work type", unit.worktype],
      ["Created", time(unit.createdAt)],
      ["Started", time(unit.startedAt)],
      ["Finished", time(unit.finishedAt)],
      ["Duration", formatDuration(unitDurationMs(unit, now) ?? Number.NaN)],
      ["Exit code", unit.exitCode === null ? "–" : String(unit.exitCode)],
      ["Detail", unit.detail || "–"],
    ]);
    // The node reported how the command really ended after the unit was judged: shown beside the verdict.
    if (unit.lateExit)
      rows.push([
        "Late exit",
        `${unit.lateExit.detail} at ${time(unit.lateExit.at)} (+${unit.lateExit.lateBytes} bytes)`,
      ]);
    record.replaceChildren(
      ...rows.flatMap(([k, v]) => [el("dt", {}, k), el("dd", { "data-field": k.toLowerCase().replace(" ", "-") }, v)]),
    );
    renderActions(unit);
  };

  /** @param {UnitRecord} unit */
  const renderActions = (unit) => {
    /** @type {HTMLButtonElement[]} */
    const buttons = [];
    if (whoami.may.submit && (unit.state === "Pending" || unit.state === "Running")) {
      buttons.push(
        el("button", { type: "button", class: "cancel", onclick: () => act(() => api.cancel(id)) }, "Cancel"),
      );
    }
    if (whoami.may.submit && unit.state !== "Released") {
      const release = () =>
        confirm(`Release unit ${id}? Its results and artifacts are deleted.`) && act(() => api.release(id));
      buttons.push(el("button", { type: "button", class: "release danger", onclick: release }, "Release"));
    }
    if (unit.state !== "Released")
      buttons.push(el("button", { type: "button", class: "download", onclick: download }, "Download artifacts"));
    actions.replaceChildren(...buttons);
  };

  /** @param {() => Promise<unknown>} call */
  const act = async (call) => {
    message.textContent = "";
    try {
      await call();
      await refresh();
    } catch (e) {
      fail(e);
    }
  };

  const download = async () => {
    message.textContent = "";
    try {
      const url = URL.createObjectURL(await api.artifacts(id));
      const link = el("a", { href: url, download: `${id}-artifacts.tar`, hidden: true });
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60_000);
    } catch (e) {
      fail(e);
    }
  };

  /** @param {import("./recap.js").RecapRow[]} rows */
  const renderRecap = (rows) => {
    const columns = RECAP_COLUMNS.map((c) => RECAP_TITLES[c]);
    recap.replaceChildren(
      el("h2", {}, "Play recap"),
      table(
        ["Host", ...columns],
        rows.map((r) => [r.host, ...RECAP_COLUMNS.map((c) => r[c])]),
        "No hosts.",
      ),
    );
    recap.hidden = false;
  };

  const refresh = async () => {
    try {
      render(await api.unit(id));
    } catch (e) {
      fail(e);
    }
  };

  /** @type {ReturnType<typeof setTimeout> | undefined} */
  let pending;
  const soon = () => {
    clearTimeout(pending);
    pending = setTimeout(refresh, 250);
  };

  /** @param {import("./sse.js").SseEvent} sse */
  const onEvent = (sse) => {
    if (sse.type === "end") return soon();
    /** @type {UnitEvent} */
    let event;
    try {
      event = JSON.parse(sse.data);
    } catch {
      return;
    }
    if (typeof event.stdout === "string") output.append(event.seq, event.stdout);
    if (event.kind === "status") soon();
    const rows = playRecap(event);
    if (rows) renderRecap(rows);
  };

  refresh();
  // A running unit's duration grows; refresh the record now and then until it is final.
  const timer = setInterval(() => !FINAL_STATES.has(state.textContent ?? "") && refresh(), 5000);
  followStream({
    url: api.unitEventsUrl(id),
    token: api.token,
    signal: abort.signal,
    onEvent,
    onState: (s, detail) => {
      live.textContent =
        s === "open"
          ? "live"
          : s === "ended"
            ? "complete"
            : s === "retrying"
              ? "reconnecting…"
              : `not live (${detail ?? s})`;
      live.dataset.state = s;
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
