/**
 * The workerd config `mesh-broker serve` runs: the prebuilt bundle as one Worker with its Durable
 * Objects in SQLite on local disk, the dashboard as a second Worker behind the ASSETS binding, and
 * one socket. Nothing else: no inspector, no debug port, no watcher (those are command-line
 * options serve never passes). Pure text generation, so every field is tested.
 */
import { ASSETS_WORKER_FILE, BUNDLE_FILE, DASHBOARD_FILE, type Manifest } from "./manifest.js";

export interface ServeLayout {
  /** Directory of the Durable Objects' SQLite files (absolute). */
  doDir: string;
  /** host:port to listen on. */
  listen: string;
  /** Absolute PEM paths; both or neither. */
  tls?: { cert: string; key: string };
}

/** The environment variable workerd reads each secret binding from (`fromEnvironment`). */
export function secretEnv(binding: string): string {
  return `MESH_${binding}`;
}

/** A Cap'n Proto text literal: JSON's escaping is a subset capnp reads the same way. */
function text(value: string): string {
  return JSON.stringify(value);
}

/** An absolute path in `embed` is looked up under workerd's import path (`-I`), which serve sets to `/`. */
function embed(path: string): string {
  if (!path.startsWith("/")) throw new Error(`embed needs an absolute path, got ${path}`);
  return `embed ${text(path)}`;
}

export function workerdConfig(manifest: Manifest, bundleDir: string, layout: ServeLayout): string {
  const sqlite = new Set(manifest.sqliteClasses);
  const namespaces = manifest.durableObjects.map(
    (d) =>
      `(className = ${text(d.className)}, uniqueKey = ${text(`${manifest.name}-${d.className}`)}, enableSql = ${sqlite.has(d.className)})`,
  );
  const bindings = [
    ...manifest.durableObjects.map((d) => `(name = ${text(d.binding)}, durableObjectNamespace = ${text(d.className)})`),
    `(name = ${text(manifest.assetsBinding)}, service = "dashboard")`,
    ...Object.entries(manifest.vars).map(([name, value]) => `(name = ${text(name)}, text = ${text(value)})`),
    ...manifest.secrets.map((name) => `(name = ${text(name)}, fromEnvironment = ${text(secretEnv(name))})`),
  ];
  const socket = layout.tls
    ? `https = (options = (), tlsOptions = (keypair = (privateKey = ${embed(layout.tls.key)}, certificateChain = ${embed(layout.tls.cert)}))), `
    : "http = (), ";
  const flags = `[${manifest.compatibilityFlags.map(text).join(", ")}]`;
  return `# Written by mesh-broker serve at every start; edits are lost.
using Workerd = import "/workerd/workerd.capnp";

const config :Workerd.Config = (
  services = [
    (name = "broker", worker = .broker),
    (name = "dashboard", worker = .dashboard),
    (name = "do-storage", disk = (path = ${text(layout.doDir)}, writable = true)),
  ],
  sockets = [(name = "main", address = ${text(layout.listen)}, ${socket}service = "broker")],
  logging = (structuredLogging = true),
);

const broker :Workerd.Worker = (
  modules = [(name = ${text(BUNDLE_FILE)}, esModule = ${embed(`${bundleDir}/${BUNDLE_FILE}`)})],
  compatibilityDate = ${text(manifest.compatibilityDate)},
  compatibilityFlags = ${flags},
  durableObjectNamespaces = [
    ${namespaces.join(",\n    ")},
  ],
  durableObjectStorage = (localDisk = "do-storage"),
  bindings = [
    ${bindings.join(",\n    ")},
  ],
);

const dashboard :Workerd.Worker = (
  modules = [
    (name = ${text(ASSETS_WORKER_FILE)}, esModule = ${embed(`${bundleDir}/${ASSETS_WORKER_FILE}`)}),
    (name = ${text(DASHBOARD_FILE)}, esModule = ${embed(`${bundleDir}/${DASHBOARD_FILE}`)}),
  ],
  compatibilityDate = ${text(manifest.compatibilityDate)},
);
`;
}
