/**
 * The toolchain runs on the Node that package.json pins as a devDependency (the npm registry's
 * official build, `node`), not on whatever Node the machine has: npm puts node_modules/.bin first on
 * every script's PATH, so `vitest`, `tsx` and `wrangler` start on it. This fails if that stops being true.
 */
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";

const pkg = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as {
  devDependencies: Record<string, string>;
  engines: { node: string };
};

describe("toolchain", () => {
  it("tests run on the pinned Node", () => {
    expect(process.version).toBe(`v${pkg.devDependencies.node}`);
  });

  it("the pinned Node is an LTS line (even major)", () => {
    const major = Number(pkg.devDependencies.node?.split(".")[0]);
    expect(major).toBeGreaterThanOrEqual(24);
    expect(major % 2).toBe(0);
  });
});
