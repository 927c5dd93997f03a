// @ts-check
/**
 * A tiny element builder. Text always goes in as text nodes, never as HTML, so data from the broker
 * cannot inject markup; the only HTML the dashboard inserts is the escaped output of ansi.js.
 */

/** @typedef {string | number | Node | null | undefined | false} Child */

/**
 * @template {keyof HTMLElementTagNameMap} K
 * @param {K} tag
 * @param {Record<string, string | boolean | ((event: Event) => void) | undefined>} [attrs]
 *   `class`, attributes, booleans (set when true), and `on…` listeners
 * @param {Child[]} children
 * @returns {HTMLElementTagNameMap[K]}
 */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (typeof value === "function") node.addEventListener(key.slice(2), value);
    else if (value === true) node.setAttribute(key, "");
    else if (typeof value === "string") node.setAttribute(key, value);
  }
  append(node, children);
  return node;
}

/**
 * @param {Element} parent
 * @param {Child[]} children
 */
export function append(parent, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    parent.append(typeof child === "object" ? child : String(child));
  }
}

/**
 * A table whose cells carry their column's name (`data-label`), which the narrow layout shows
 * beside each value when rows become cards.
 * @param {string[]} columns
 * @param {Child[][]} rows
 * @param {string} empty  what to say when there are no rows
 */
export function table(columns, rows, empty) {
  if (rows.length === 0) return el("p", { class: "empty" }, empty);
  return el(
    "div",
    { class: "table-wrap" },
    el(
      "table",
      { class: "cards" },
      el("thead", {}, el("tr", {}, ...columns.map((c) => el("th", { scope: "col" }, c)))),
      el(
        "tbody",
        {},
        ...rows.map((cells) =>
          el("tr", {}, ...cells.map((cell, i) => el("td", { "data-label": columns[i] ?? "" }, cell))),
        ),
      ),
    ),
  );
}

/**
 * A state badge: `Running`, `connected`, … with a class per value for its colour.
 * @param {string} text
 */
export function badge(text) {
  return el("span", { class: `badge badge-${text.toLowerCase()}` }, text);
}
