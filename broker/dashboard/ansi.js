// @ts-check
/**
 * ANSI SGR colours to HTML. The text is untrusted (a unit's output): everything is escaped, colours
 * become spans with `ansi-*` classes (256-colour and truecolour ones an inline `color`), and every
 * other escape sequence (cursor moves, OSC titles, …) is dropped. A renderer keeps the style and any
 * escape sequence cut in half between chunks, so output can be fed as it arrives.
 */

/**
 * @typedef {object} Style
 * @property {boolean} bold
 * @property {boolean} dim
 * @property {boolean} italic
 * @property {boolean} underline
 * @property {string | null} fg  class suffix ("1", "9") or a CSS colour ("#ff8700")
 * @property {string | null} bg
 */

/** @returns {Style} */
const plain = () => ({ bold: false, dim: false, italic: false, underline: false, fg: null, bg: null });

const ESCAPES = /** @type {Record<string, string>} */ ({
  "&": "&amp;",
  "<": "&lt;",
  ">": "&gt;",
  '"': "&quot;",
  "'": "&#39;",
});

/** @param {string} text */
export function escapeHtml(text) {
  return text.replace(/[&<>"']/g, (c) => ESCAPES[c] ?? c);
}

const CUBE = [0, 95, 135, 175, 215, 255];
const hex = (/** @type {number} */ n) => n.toString(16).padStart(2, "0");

/**
 * A colour from the 256-colour palette: 0–15 keep their classes (so themes apply), the rest are CSS.
 * @param {number} n
 * @returns {string | null}
 */
function palette(n) {
  if (!Number.isInteger(n) || n < 0 || n > 255) return null;
  if (n < 16) return String(n);
  if (n >= 232) {
    const level = 8 + (n - 232) * 10;
    return `#${hex(level)}${hex(level)}${hex(level)}`;
  }
  const i = n - 16;
  return `#${hex(CUBE[Math.floor(i / 36)] ?? 0)}${hex(CUBE[Math.floor(i / 6) % 6] ?? 0)}${hex(CUBE[i % 6] ?? 0)}`;
}

/**
 * Reads an extended colour (`5;n` or `2;r;g;b`) from `codes` at `i`, the index of its 38/48.
 * @param {number[]} codes
 * @param {number} i
 * @returns {{ colour: string | null, next: number }}
 */
function extended(codes, i) {
  if (codes[i + 1] === 5) return { colour: palette(codes[i + 2] ?? -1), next: i + 3 };
  if (codes[i + 1] === 2) {
    const rgb = codes.slice(i + 2, i + 5);
    const valid = rgb.length === 3 && rgb.every((v) => v >= 0 && v <= 255);
    return { colour: valid ? `#${rgb.map(hex).join("")}` : null, next: i + 5 };
  }
  return { colour: null, next: codes.length };
}

/**
 * Applies one SGR parameter list to a style.
 * @param {Style} style
 * @param {string} params  e.g. "1;31", "" (a reset)
 * @returns {Style}
 */
export function applySgr(style, params) {
  const codes = params === "" ? [0] : params.split(/[;:]/).map((p) => (p === "" ? 0 : Number.parseInt(p, 10)));
  let s = { ...style };
  for (let i = 0; i < codes.length; i++) {
    const c = codes[i] ?? 0;
    if (c === 0) s = plain();
    else if (c === 1) s.bold = true;
    else if (c === 2) s.dim = true;
    else if (c === 3) s.italic = true;
    else if (c === 4) s.underline = true;
    else if (c === 22) s.bold = s.dim = false;
    else if (c === 23) s.italic = false;
    else if (c === 24) s.underline = false;
    else if (c >= 30 && c <= 37) s.fg = String(c - 30);
    else if (c === 39) s.fg = null;
    else if (c >= 40 && c <= 47) s.bg = String(c - 40);
    else if (c === 49) s.bg = null;
    else if (c >= 90 && c <= 97) s.fg = String(c - 90 + 8);
    else if (c >= 100 && c <= 107) s.bg = String(c - 100 + 8);
    else if (c === 38 || c === 48) {
      const { colour, next } = extended(codes, i);
      if (colour !== null) s[c === 38 ? "fg" : "bg"] = colour;
      i = next - 1;
    }
  }
  return s;
}

/**
 * The opening tag for a style, or "" for the plain style.
 * @param {Style} s
 * @returns {string}
 */
function openTag(s) {
  const classes = [];
  const styles = [];
  if (s.bold) classes.push("ansi-bold");
  if (s.dim) classes.push("ansi-dim");
  if (s.italic) classes.push("ansi-italic");
  if (s.underline) classes.push("ansi-underline");
  if (s.fg?.startsWith("#")) styles.push(`color:${s.fg}`);
  else if (s.fg) classes.push(`ansi-fg-${s.fg}`);
  if (s.bg?.startsWith("#")) styles.push(`background-color:${s.bg}`);
  else if (s.bg) classes.push(`ansi-bg-${s.bg}`);
  if (classes.length === 0 && styles.length === 0) return "";
  const cls = classes.length ? ` class="${classes.join(" ")}"` : "";
  const css = styles.length ? ` style="${styles.join(";")}"` : "";
  return `<span${cls}${css}>`;
}

// CSI (SGR when it ends in m), OSC (ended by BEL or ST), other two-byte escapes, and control
// characters other than tab and newline; then a sequence cut off at the end (kept for the next
// chunk), and a stray ESC.
const TOKEN =
  // biome-ignore lint/suspicious/noControlCharactersInRegex: escape sequences are what this parses.
  /\x1b\[([0-?]*)[ -/]*([@-~])|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[ -/]*[0-Z\\^-~]|[\x00-\x08\x0b-\x1a\x1c-\x1f\x7f]|(\x1b(?:\[[0-?]*[ -/]*|\][^\x07\x1b]*\x1b?|[ -/]*)?)$|\x1b/g;

const MAX_PENDING = 512;

/**
 * A converter for one output stream: push chunks, get HTML for each.
 * @returns {{ push(chunk: string): string }}
 */
export function createAnsiRenderer() {
  let style = plain();
  let pending = "";
  return {
    push(chunk) {
      const text = pending + chunk;
      pending = "";
      let html = "";
      let last = 0;
      let open = openTag(style);
      const emit = (/** @type {string} */ part) => {
        if (part !== "") html += open ? `${open}${escapeHtml(part)}</span>` : escapeHtml(part);
      };
      for (const m of text.matchAll(TOKEN)) {
        emit(text.slice(last, m.index));
        last = m.index + m[0].length;
        if (m[3] !== undefined) {
          // An OSC that never ends is dropped rather than held forever.
          pending = m[3].length < MAX_PENDING ? m[3] : "";
          last = text.length;
          break;
        }
        if (m[2] === "m") {
          style = applySgr(style, m[1] ?? "");
          open = openTag(style);
        }
      }
      emit(text.slice(last));
      return html;
    },
  };
}

/**
 * Converts a whole text at once.
 * @param {string} text
 */
export function ansiToHtml(text) {
  return createAnsiRenderer().push(text);
}
