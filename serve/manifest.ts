/**
 * What `mesh-broker serve` needs to know about the built Worker besides its code: written by
 * scripts/build-broker.ts from wrangler.toml next to the bundle `wrangler deploy --dry-run` made,
 * so serve runs exactly what a deploy would upload, with the same settings.
 */
import { z } from "zod";

export const MANIFEST_FILE = "broker.json";
/** The bundle's entry module (wrangler's name for it in --outdir). */
export const BUNDLE_FILE = "index.js";
/** The dashboard's files as one ES module (path → content type and text), made by the build. */
export const DASHBOARD_FILE = "dashboard.js";
/** The Worker that answers the bundle's ASSETS binding from DASHBOARD_FILE. */
export const ASSETS_WORKER_FILE = "assets.js";

export const Manifest = z.object({
  /** wrangler's `name`: Durable Object storage keys are `<name>-<class>`, as wrangler dev keys them. */
  name: z.string().min(1),
  compatibilityDate: z.string().regex(/^\d{4}-\d{2}-\d{2}$/),
  compatibilityFlags: z.array(z.string()),
  vars: z.record(z.string(), z.string()),
  durableObjects: z.array(z.object({ binding: z.string(), className: z.string() })),
  /** Durable Object classes stored in SQLite (every migration's new_sqlite_classes). */
  sqliteClasses: z.array(z.string()),
  /** The binding the Worker reads its static files through. */
  assetsBinding: z.string(),
  /** The binding that must come from the environment (the admin token), never from a file. */
  secrets: z.array(z.string()),
});
export type Manifest = z.infer<typeof Manifest>;
