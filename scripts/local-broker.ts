/**
 * Runs the broker on local workerd with its state on disk: `mesh-broker serve` (scripts/serve-broker.ts)
 * by default, `wrangler dev` with MESH_BROKER_RUNTIME=wrangler or a wrangler config of its own. Used by
 * `npm start`, by the tests and by the benchmarks, so all three run the same thing.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { createWriteStream } from "node:fs";
import { chmod, mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { createServer } from "node:net";
import { fileURLToPath } from "node:url";
import { startServe } from "./serve-broker.js";

export const ROOT = fileURLToPath(new URL("..", import.meta.url));

export interface LocalBroker {
  url: string;
  token: string;
  port: number;
  process: ChildProcess;
  stop(): Promise<void>;
}

export async function freePort(host = "127.0.0.1"): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, host, () => {
      const address = server.address();
      server.close(() =>
        typeof address === "object" && address ? resolve(address.port) : reject(new Error("no port")),
      );
    });
  });
}

export async function startBroker(opts: {
  stateDir: string;
  token: string;
  logFile: string;
  port?: number;
  vars?: Record<string, string>;
  /** Another wrangler config than the broker's (the benchmarks' raw WebSocket sink); runs on wrangler dev. */
  config?: string;
  /** serve only: HTTPS/WSS with these PEM files. */
  tls?: { cert: string; key: string };
  /** Default: MESH_BROKER_RUNTIME, else serve. */
  runtime?: "serve" | "wrangler";
}): Promise<LocalBroker> {
  const runtime = opts.runtime ?? (process.env.MESH_BROKER_RUNTIME === "wrangler" ? "wrangler" : "serve");
  if (runtime === "serve" && !opts.config) return startServe({ ...opts, root: ROOT });
  await mkdir(opts.stateDir, { recursive: true });
  const port = opts.port ?? (await freePort());
  const inspector = await freePort();
  // The admin token goes in a file of the state dir (0600), read by wrangler as it reads .dev.vars:
  // on the command line (`--var`) every local user could read it in `ps`. Tunables may stay there.
  const secrets = join(opts.stateDir, "secrets.env");
  await writeFile(secrets, `ADMIN_TOKEN=${opts.token}\n`, { mode: 0o600 });
  await chmod(secrets, 0o600);
  const vars = Object.entries(opts.vars ?? {}).flatMap(([k, v]) => ["--var", `${k}:${v}`]);
  const log = createWriteStream(opts.logFile, { flags: "a" });
  const child = spawn(
    process.execPath,
    [
      `${ROOT}node_modules/wrangler/bin/wrangler.js`,
      "dev",
      ...(opts.config ? ["--config", opts.config] : []),
      "--ip",
      "127.0.0.1",
      "--port",
      String(port),
      "--inspector-port",
      String(inspector),
      "--persist-to",
      opts.stateDir,
      "--show-interactive-dev-session=false",
      "--log-level",
      "info",
      "--env-file",
      secrets,
      ...vars,
    ],
    {
      cwd: ROOT,
      // Its own process group, so stop() ends wrangler and the workerd it started, and nothing else.
      detached: true,
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, WRANGLER_SEND_METRICS: "false", CI: "1", NO_COLOR: "1" },
    },
  );
  child.stdout?.pipe(log);
  child.stderr?.pipe(log);
  const url = `http://127.0.0.1:${port}`;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null && child.pid) {
      try {
        process.kill(-child.pid, "SIGTERM");
      } catch {
        // Already gone.
      }
      const timer = setTimeout(() => child.pid && tryKill(-child.pid, "SIGKILL"), 5000);
      await exited;
      clearTimeout(timer);
    }
    log.end();
  };
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`wrangler dev exited with ${child.exitCode}; see ${opts.logFile}`);
    try {
      const response = await fetch(`${url}/healthz`);
      if (response.ok) break;
    } catch {
      // Not listening yet.
    }
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`broker did not come up on ${url} within 60 s; see ${opts.logFile}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  return { url, token: opts.token, port, process: child, stop };
}

function tryKill(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    // Already gone.
  }
}
