/**
 * Builds what `mesh-broker serve` runs into dist/broker: the bundle `wrangler deploy --dry-run
 * --outdir` makes (the very file a deploy uploads), a manifest of wrangler.toml's settings for it
 * (serve/manifest.ts), and the dashboard's files embedded in a module for the assets Worker.
 */
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { copyFile, mkdir, readFile, readdir, rm, writeFile } from "node:fs/promises";
import { extname, join } from "node:path";
import { unstable_readConfig } from "wrangler";
import { ASSETS_WORKER_FILE, DASHBOARD_FILE, MANIFEST_FILE, Manifest } from "../serve/manifest.js";
import { ROOT } from "./local-broker.js";

const OUT = join(ROOT, "dist/broker");
const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".json": "application/json",
  ".svg": "image/svg+xml",
};

async function main(): Promise<void> {
  await rm(OUT, { recursive: true, force: true });
  const built = spawnSync(
    process.execPath,
    [join(ROOT, "node_modules/wrangler/bin/wrangler.js"), "deploy", "--dry-run", "--outdir", OUT],
    {
      cwd: ROOT,
      stdio: ["ignore", "pipe", "inherit"],
      env: { ...process.env, WRANGLER_SEND_METRICS: "false", CI: "1", NO_COLOR: "1" },
    },
  );
  if (built.status !== 0) throw new Error(`wrangler deploy --dry-run failed (${built.status})`);
  await rm(join(OUT, "README.md"), { force: true });

  const config = unstable_readConfig({ config: join(ROOT, "wrangler.toml") });
  if (!config.assets?.directory || !config.assets.binding)
    throw new Error("wrangler.toml has no [assets] directory and binding");
  const manifest = Manifest.parse({
    name: config.name,
    compatibilityDate: config.compatibility_date,
    compatibilityFlags: config.compatibility_flags,
    vars: Object.fromEntries(Object.entries(config.vars).map(([k, v]) => [k, String(v)])),
    durableObjects: config.durable_objects.bindings.map((b: { name: string; class_name: string }) => ({
      binding: b.name,
      className: b.class_name,
    })),
    sqliteClasses: config.migrations.flatMap((m: { new_sqlite_classes?: string[] }) => m.new_sqlite_classes ?? []),
    assetsBinding: config.assets.binding,
    // Declared in wrangler.toml's comments and README: `wrangler secret put ADMIN_TOKEN`.
    secrets: ["ADMIN_TOKEN"],
  });
  await writeFile(join(OUT, MANIFEST_FILE), `${JSON.stringify(manifest, null, 2)}\n`);

  // wrangler resolves the directory against the config file's folder, the repository root here.
  const assetsDir = join(ROOT, config.assets.directory);
  const ignored = new Set(
    (await readFile(join(assetsDir, ".assetsignore"), "utf8").catch(() => ""))
      .split("\n")
      .map((l) => l.trim())
      .filter(Boolean),
  );
  const files: Record<string, { type: string; etag: string; body: string }> = {};
  for (const name of (await readdir(assetsDir)).sort()) {
    if (ignored.has(name)) continue;
    const body = await readFile(join(assetsDir, name), "utf8");
    const etag = `"${createHash("sha256").update(body).digest("base64url").slice(0, 22)}"`;
    files[`/${name}`] = { type: TYPES[extname(name)] ?? "application/octet-stream", etag, body };
  }
  await writeFile(join(OUT, DASHBOARD_FILE), `export default ${JSON.stringify(files)};\n`);
  await copyFile(join(ROOT, "serve/assets-worker.js"), join(OUT, ASSETS_WORKER_FILE));
  await mkdir(OUT, { recursive: true });
  console.log(`dist/broker: bundle, ${MANIFEST_FILE}, ${Object.keys(files).length} dashboard files`);
}

main().catch((error: unknown) => {
  console.error(`build-broker: ${error instanceof Error ? error.message : String(error)}`);
  process.exit(1);
});
