/**
 * The web dashboard in a real browser (Debian's chromium driven by playwright-core): sign in with a
 * read token, see the node connected, watch a unit's ANSI-coloured output arrive live and its final
 * state, the play recap of a real ansible-runner unit, no Cancel/Release for a reader but working
 * ones for a submitter, the artifacts download, the phone-sized layout, and the fleet chart and
 * node buttons for admins. `MESH_SCREENSHOTS=1` writes the screenshots to docs/ for the README.
 */
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { type Browser, type Page, chromium } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ROOT } from "../../scripts/local-broker.js";
import type { UnitRecord } from "../../shared/unit.js";
import {
  type RunningAgent,
  api,
  broker,
  newMesh,
  createToken as newToken,
  sh,
  startAgent,
  tempDir,
} from "./harness.js";

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const haveBrowser = existsSync(CHROMIUM);
const skipped = !haveBrowser && process.env.MESH_SKIP_BROWSER === "1";
const NODE = "dash-node";
/** Generous bounds for things that happen in a second or two on a quiet machine. */
const WAIT = { timeout: 60_000 };

const mesh = newMesh();
let agent: RunningAgent;
let browser: Browser;
let readToken: string;
let hasAnsible = false;
let shots: string;

/** Six coloured lines, a second apart, so that they arrive while the unit runs. */
const SCRIPT = String.raw`for i in 1 2 3 4 5 6; do
  printf '\033[32mok: line %s\033[0m \033[1;31m<script>window.__injected = 1</script>\033[0m \033[38;5;208morange\033[0m\n' "$i"
  sleep 1
done
`;

async function createToken(role: string): Promise<string> {
  return (await newToken(mesh, role, { name: `dashboard test ${role}` })).token;
}

async function signIn(page: Page, token = readToken, role = "read"): Promise<void> {
  await page.goto(broker().url);
  await page.locator("#login-mesh").fill(mesh);
  await page.locator("#login-token").fill(token);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.locator("header .who").getByText(role).waitFor(WAIT);
}

async function submit(worktype: string, payload: string): Promise<string> {
  const reply = await api<UnitRecord>(mesh, "POST", `/units?worktype=${worktype}`, { body: payload });
  expect(reply.status).toBe(201);
  return reply.body.id;
}

describe.skipIf(skipped)("the web dashboard", () => {
  beforeAll(async () => {
    if (!haveBrowser) {
      throw new Error(
        `no browser at ${CHROMIUM}: apt-get install -y chromium (or set CHROMIUM_PATH; MESH_SKIP_BROWSER=1 skips this test)`,
      );
    }
    hasAnsible = (await sh(mesh, "command -v ansible-runner")).code === 0;
    shots = process.env.MESH_SCREENSHOTS === "1" ? join(ROOT, "docs") : await tempDir("mesh-dashboard-");
    readToken = await createToken("read");
    agent = await startAgent({
      mesh,
      nodeId: NODE,
      config: [
        "- work-command: {worktype: script, command: sh}",
        ...(hasAnsible ? ["- work-command: {worktype: ansible-runner, command: ansible-runner, params: worker}"] : []),
        "",
      ].join("\n"),
      extraArgs: ["--tag", "site=lab"],
    });
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox", "--headless=new"] });
  });

  afterAll(async () => {
    await browser?.close();
    await agent?.stop();
  });

  it("shows the node and a unit's output live, in colour, to a read token", async () => {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    // Script errors and Content-Security-Policy refusals show up here.
    const problems: string[] = [];
    page.on("pageerror", (error) => problems.push(error.message));
    page.on("console", (message) => message.type() === "error" && problems.push(message.text()));
    await signIn(page);
    const node = page.locator("section.nodes tr", { hasText: NODE });
    await node.locator(".badge-connected").waitFor(WAIT);
    await expect(node.textContent()).resolves.toContain("site=lab");

    const id = await submit("script", SCRIPT);
    // The unit shows up in the overview without a reload.
    await page.locator(`section.units a[href="#/units/${id}"]`).click(WAIT);
    const output = page.locator("pre.output");
    await output.getByText("ok: line 1").waitFor(WAIT);
    // The first line is on screen while the unit still has seconds to run: it arrived live.
    expect((await api<UnitRecord>(mesh, "GET", `/units/${id}`)).body.state).toBe("Running");
    await output.getByText("ok: line 6").waitFor(WAIT);
    await page.locator(".unit-state .badge-succeeded").waitFor(WAIT);
    await page.locator(".live", { hasText: "complete" }).waitFor(WAIT);

    await expect(output.locator("span.ansi-fg-2", { hasText: "ok: line 3" }).count()).resolves.toBe(1);
    await expect(output.locator("span.ansi-bold.ansi-fg-1").count()).resolves.toBe(6);
    await expect(output.locator("span[style='color:#ff8700']").count()).resolves.toBe(6);
    // Output is text, never markup: the script tag shows as text and did not run.
    await expect(output.locator("script").count()).resolves.toBe(0);
    await expect(output.textContent()).resolves.toContain("<script>window.__injected = 1</script>");
    // Page expressions as strings: this file is type-checked without the DOM library.
    await expect(page.evaluate("window.__injected")).resolves.toBeUndefined();

    await expect(page.locator("dd[data-field=exit-code]").textContent()).resolves.toBe("0");
    await expect(page.locator("dd[data-field=node]").textContent()).resolves.toBe(NODE);
    // A read token may not cancel or release; it may download.
    await expect(page.locator("button.cancel, button.release").count()).resolves.toBe(0);
    const [download] = await Promise.all([
      page.waitForEvent("download", WAIT),
      page.getByRole("button", { name: "Download artifacts" }).click(WAIT),
    ]);
    expect(download.suggestedFilename()).toBe(`${id}-artifacts.tar`);
    const tar = await readFile(await download.path());
    expect(tar.subarray(257, 262).toString()).toBe("ustar");
    expect(tar.toString("latin1")).toContain("ok: line 6");
    expect(problems).toEqual([]);
    if (!hasAnsible) await page.screenshot({ path: join(shots, "dashboard.png") });
    await page.close();
  });

  it("shows a playbook's recap per host", async (context) => {
    if (!hasAnsible)
      context.skip("ansible-runner is not installed: apt-get install -y ansible-core python3-ansible-runner");
    const submitted = await sh(
      mesh,
      "ansible-runner transmit demo -p site.yml | $MESHCTL work submit ansible-runner -p -",
    );
    expect(submitted.code, submitted.stderr).toBe(0);
    const { id } = JSON.parse(submitted.stdout.toString()) as { id: string };
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    await signIn(page);
    await page.goto(`${broker().url}/#/units/${id}`);
    await page.locator(".unit-state .badge-succeeded").waitFor(WAIT);
    const recap = page.locator("section.recap");
    await recap.locator("td", { hasText: "localhost" }).waitFor(WAIT);
    const row = await recap.locator("tbody tr").first().locator("td").allTextContents();
    expect(row.slice(0, 3)).toEqual(["localhost", "1", "0"]);
    await page.locator("pre.output").getByText("reached through the mesh").waitFor(WAIT);
    await page.screenshot({ path: join(shots, "dashboard.png") });
    await page.close();
  });

  it("lets a submit token cancel a running unit, then release it", async () => {
    const id = await submit("script", "echo started; sleep 120");
    const page = await browser.newPage();
    page.on("dialog", (dialog) => dialog.accept());
    await signIn(page, await createToken("submit"), "submit");
    await page.goto(`${broker().url}/#/units/${id}`);
    await page.locator("pre.output").getByText("started").waitFor(WAIT);
    await page.getByRole("button", { name: "Cancel" }).click();
    await page.locator(".unit-state .badge-canceled").waitFor(WAIT);
    await expect(page.locator("button.cancel").count()).resolves.toBe(0);
    await page.getByRole("button", { name: "Release" }).click();
    await page.locator(".unit-state .badge-released").waitFor(WAIT);
    expect((await api<UnitRecord>(mesh, "GET", `/units/${id}`)).body.state).toBe("Released");
    await page.close();
  });

  it("fits a phone: tables become cards, nothing scrolls sideways", async () => {
    const context = await browser.newContext({
      viewport: { width: 390, height: 844 },
      deviceScaleFactor: 2,
      isMobile: true,
      hasTouch: true,
    });
    const page = await context.newPage();
    await signIn(page);
    await page.locator("section.nodes .badge-connected").waitFor(WAIT);
    await page.locator("section.units tbody tr").first().waitFor(WAIT);
    await expect(page.locator("section.units thead").isHidden()).resolves.toBe(true);
    const widths = await page.evaluate<{ page: number; screen: number }>(
      "({ page: document.documentElement.scrollWidth, screen: window.innerWidth })",
    );
    expect(widths.page).toBeLessThanOrEqual(widths.screen);
    await page.screenshot({ path: join(shots, "dashboard-phone.png") });
    await context.close();
  });

  it("ends the session of a token revoked while its page is open, within seconds", async () => {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const doomed = await newToken(mesh, "read", { name: "dashboard test revoked" });
    await signIn(page, doomed.token);
    await page.locator(".live", { hasText: "live" }).first().waitFor(WAIT);
    const revokedAt = Date.now();
    expect((await api(mesh, "DELETE", `/tokens/${doomed.id}`)).status).toBe(200);
    // The mesh event stream ends within 3 s; its reconnect is answered 401 and the page signs out.
    // Under 7 s: sooner than the overview's 10 s refresh, which alone would also meet a 401.
    await page.locator("#login-token").waitFor({ timeout: 20_000 });
    expect(Date.now() - revokedAt).toBeLessThan(7_000);
    await page.getByRole("alert").getByText("revoked").waitFor(WAIT);
    await page.close();
  });

  it("charts queue depth and pickup time; an admin pauses, resumes and checks a node, a reader gets no such buttons", async () => {
    const reader = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    await signIn(reader);
    await reader.locator("section.nodes .badge-connected").waitFor(WAIT);
    await reader.locator("section.charts figure.chart").first().waitFor(WAIT);
    await expect(reader.getByRole("button", { name: "Pause" }).count()).resolves.toBe(0);
    await reader.close();

    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    await signIn(page, broker().token, "admin");
    await expect(page.locator("section.charts figure.chart").count()).resolves.toBe(2);
    // The first metrics sample is taken as the page opens: queue depth is a number at once.
    await page.locator("section.charts .chart-value", { hasText: /^\d+$/ }).first().waitFor(WAIT);
    await page.getByRole("button", { name: "Pause" }).click();
    await page.locator("section.nodes .badge-paused").waitFor(WAIT);
    expect(
      (await api<{ nodes: { nodeId: string; paused: boolean }[] }>(mesh, "GET", "/status")).body.nodes.find(
        (n) => n.nodeId === NODE,
      )?.paused,
    ).toBe(true);
    await page.getByRole("button", { name: "Resume" }).click();
    await page.locator("section.nodes .badge-connected").waitFor(WAIT);
    await page.getByRole("button", { name: "Check" }).click();
    await page.locator("section.nodes .note", { hasText: /check (ok|failed)/ }).waitFor(WAIT);
    await page.close();
  });

  it("refuses a wrong token at sign-in and signs out", async () => {
    const page = await browser.newPage();
    await page.goto(broker().url);
    await page.locator("#login-mesh").fill(mesh);
    await page.locator("#login-token").fill("mtk_wrong");
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.locator(".login .error", { hasText: "unauthorized" }).waitFor(WAIT);
    await signIn(page);
    await page.getByRole("button", { name: "Log out" }).click();
    await page.locator("#login-token").waitFor(WAIT);
    await page.reload();
    await page.locator("#login-token").waitFor(WAIT);
    await page.close();
  });
});
