/** The dashboard's ANSI converter: SGR colours to spans, everything escaped, other sequences dropped. */
import { describe, expect, it } from "vitest";
import { ansiToHtml, applySgr, createAnsiRenderer, escapeHtml } from "../../broker/dashboard/ansi.js";

const E = "\x1b";

describe("ansiToHtml", () => {
  it("escapes HTML in plain and coloured text, so markup in output stays text", () => {
    expect(ansiToHtml(`<script>alert("x")</script> & 'y'`)).toBe(
      "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;y&#39;",
    );
    expect(ansiToHtml(`${E}[31m<img src=x onerror=alert(1)>${E}[0m`)).toBe(
      '<span class="ansi-fg-1">&lt;img src=x onerror=alert(1)&gt;</span>',
    );
  });

  it("leaves text without escapes alone", () => {
    expect(ansiToHtml("ok: [localhost]\n\tdone")).toBe("ok: [localhost]\n\tdone");
  });

  it.each([
    ["1", "ansi-bold"],
    ["2", "ansi-dim"],
    ["3", "ansi-italic"],
    ["4", "ansi-underline"],
    ["30", "ansi-fg-0"],
    ["37", "ansi-fg-7"],
    ["40", "ansi-bg-0"],
    ["47", "ansi-bg-7"],
    ["90", "ansi-fg-8"],
    ["97", "ansi-fg-15"],
    ["100", "ansi-bg-8"],
    ["107", "ansi-bg-15"],
    ["38;5;9", "ansi-fg-9"],
    ["48;5;2", "ansi-bg-2"],
    ["1;32", "ansi-bold ansi-fg-2"],
  ])("SGR %s gives class %s", (sgr, classes) => {
    expect(ansiToHtml(`${E}[${sgr}mx`)).toBe(`<span class="${classes}">x</span>`);
  });

  it("maps 256-colour and truecolour to inline colours", () => {
    expect(ansiToHtml(`${E}[38;5;208mx`)).toBe('<span style="color:#ff8700">x</span>');
    expect(ansiToHtml(`${E}[38;5;244mx`)).toBe('<span style="color:#808080">x</span>');
    expect(ansiToHtml(`${E}[38;2;1;2;255mx`)).toBe('<span style="color:#0102ff">x</span>');
    expect(ansiToHtml(`${E}[48;2;255;0;0;1mx`)).toBe(
      '<span class="ansi-bold" style="background-color:#ff0000">x</span>',
    );
    expect(ansiToHtml(`${E}[38;2;999;0;0mx`)).toBe("x");
  });

  it("resets with 0, an empty SGR, 22, 23, 24, 39 and 49", () => {
    expect(ansiToHtml(`${E}[31ma${E}[0mb${E}[32mc${E}[md`)).toBe(
      '<span class="ansi-fg-1">a</span>b<span class="ansi-fg-2">c</span>d',
    );
    expect(ansiToHtml(`${E}[1;2;3;4;31;41ma${E}[22;23;24;39;49mb`)).toBe(
      '<span class="ansi-bold ansi-dim ansi-italic ansi-underline ansi-fg-1 ansi-bg-1">a</span>b',
    );
  });

  it("drops other escape sequences and control characters", () => {
    expect(ansiToHtml(`a${E}[2K${E}[1Gb${E}]0;title\x07c${E}]8;;http://x${E}\\d${E}(Be\r\nf\x00\x08`)).toBe("abcde\nf");
    expect(ansiToHtml(`${E}[?25lx${E}[?25h`)).toBe("x");
  });

  it("is stateless between calls", () => {
    expect(ansiToHtml(`${E}[31ma`)).toBe('<span class="ansi-fg-1">a</span>');
    expect(ansiToHtml("b")).toBe("b");
  });
});

describe("createAnsiRenderer", () => {
  it("keeps the style across chunks", () => {
    const r = createAnsiRenderer();
    expect(r.push(`${E}[33mchanged`)).toBe('<span class="ansi-fg-3">changed</span>');
    expect(r.push(": [h]\n")).toBe('<span class="ansi-fg-3">: [h]\n</span>');
    expect(r.push(`${E}[0mok`)).toBe("ok");
  });

  it("holds an escape sequence cut between chunks until its end arrives", () => {
    const r = createAnsiRenderer();
    expect(r.push(`a${E}`)).toBe("a");
    expect(r.push("[3")).toBe("");
    expect(r.push("2mb")).toBe('<span class="ansi-fg-2">b</span>');
    expect(r.push(`${E}]0;ti`)).toBe("");
    expect(r.push("tle\x07c")).toBe('<span class="ansi-fg-2">c</span>');
  });

  it("gives up on an OSC that never ends", () => {
    const r = createAnsiRenderer();
    expect(r.push(`${E}]0;${"x".repeat(600)}`)).toBe("");
    expect(r.push("y")).toBe("y");
  });
});

describe("helpers", () => {
  it("escapeHtml escapes the five characters", () => {
    expect(escapeHtml(`&<>"'`)).toBe("&amp;&lt;&gt;&quot;&#39;");
  });

  it("applySgr does not change the style it is given", () => {
    const plain = { bold: false, dim: false, italic: false, underline: false, fg: null, bg: null };
    expect(applySgr(plain, "1;31")).toMatchObject({ bold: true, fg: "1" });
    expect(plain.bold).toBe(false);
  });
});
