/**
 * Import boundaries, checked rather than remembered: the broker runs on workerd and must not pull in
 * Node-only code; the two CLIs share code only through shared/node/; shared/ depends on nothing of
 * the three parts that use it.
 */
import { readFileSync, readdirSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { ROOT } from "../../scripts/local-broker.js";

function sources(dir: string): string[] {
  return readdirSync(join(ROOT, dir), { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile() && /\.(ts|js)$/.test(e.name) && !e.name.endsWith(".d.ts"))
    .map((e) => relative(ROOT, join(e.parentPath, e.name)));
}

/** Every import of a file, as a path from the repository root (or `node:x` / a package name). */
function imports(file: string): string[] {
  const text = readFileSync(join(ROOT, file), "utf8");
  const specs = [
    ...text.matchAll(/(?:^|\n)\s*(?:import|export)[^"'`;]*?from\s*["']([^"']+)["']|import\(\s*["']([^"']+)["']\s*\)/g),
  ].map((m) => m[1] ?? m[2]!);
  return specs.map((s) => (s.startsWith(".") ? relative(ROOT, resolve(dirname(join(ROOT, file)), s)) : s));
}

const RULES: { from: string; forbidden: RegExp; why: string }[] = [
  { from: "broker", forbidden: /^(shared\/node\/|agent\/|meshctl\/|node:)/, why: "the broker runs on workerd" },
  { from: "meshctl", forbidden: /^agent\//, why: "the CLIs share code through shared/node/" },
  { from: "agent", forbidden: /^meshctl\//, why: "the CLIs share code through shared/node/" },
  { from: "shared", forbidden: /^(broker|agent|meshctl)\//, why: "shared/ depends on none of its users" },
];

describe("import boundaries", () => {
  for (const rule of RULES) {
    it(`${rule.from}/ imports nothing matching ${rule.forbidden} (${rule.why})`, () => {
      const files = sources(rule.from).filter((f) => !f.startsWith("broker/dashboard/"));
      expect(files.length).toBeGreaterThan(0);
      const broken = files.flatMap((f) =>
        imports(f)
          .filter((i) => rule.forbidden.test(i))
          .map((i) => `${f} → ${i}`),
      );
      expect(broken).toEqual([]);
    });
  }

  it("shared/ outside shared/node/ uses no Node built-in (the broker imports it)", () => {
    const files = sources("shared").filter((f) => !f.startsWith("shared/node/"));
    const broken = files.flatMap((f) =>
      imports(f)
        .filter((i) => i.startsWith("node:"))
        .map((i) => `${f} → ${i}`),
    );
    expect(broken).toEqual([]);
  });

  it("no file of agent/, meshctl/ or shared/ imports itself through others (no cycles, type imports included)", () => {
    const files = ["agent", "meshctl", "shared"].flatMap(sources);
    const edges = new Map(
      files.map((f) => [
        f,
        imports(f)
          .map((i) => i.replace(/\.js$/, ".ts"))
          .filter((i) => files.includes(i)),
      ]),
    );
    const cycles: string[] = [];
    const walk = (file: string, path: string[]): void => {
      for (const next of edges.get(file) ?? []) {
        if (next === path[0]) cycles.push([...path, next].join(" → "));
        else if (!path.includes(next) && next > path[0]!) walk(next, [...path, next]);
      }
    };
    for (const file of files) walk(file, [file]);
    expect(cycles).toEqual([]);
  });

  it("the checker sees relative imports (a planted one is caught)", () => {
    expect(imports("meshctl/sign.ts")).toContain("shared/node/hash.js");
  });
});
