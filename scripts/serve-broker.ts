/**
 * A local broker on `mesh-broker serve` (workerd, the prebuilt bundle): what `npm start`, the e2e
 * suite and the benchmarks run by default. The admin token goes to serve through its environment
 * (MESH_ADMIN_TOKEN), never its command line. scripts/local-broker.ts switches between this and
 * `wrangler dev` (MESH_BROKER_RUNTIME=wrangler, or a raw wrangler config).
 */
import { spawn } from "node:child_process";
import { createWriteStream } from "node:fs";
import { mkdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { Agent, fetch as undiciFetch } from "undici";
import type { LocalBroker } from "./local-broker.js";

export const SERVE_BIN = "dist/serve/cli.js";

export interface ServeOptions {
  root: string;
  stateDir: string;
  token: string;
  logFile: string;
  /** 0 or absent: a free port chosen by the kernel; a restart passes the port it got. */
  port?: number | undefined;
  vars?: Record<string, string> | undefined;
  tls?: { cert: string; key: string } | undefined;
}

export async function startServe(opts: ServeOptions): Promise<LocalBroker> {
  await mkdir(opts.stateDir, { recursive: true, mode: 0o700 });
  const log = createWriteStream(opts.logFile, { flags: "a" });
  const vars = Object.entries(opts.vars ?? {}).flatMap(([k, v]) => ["--var", `${k}=${v}`]);
  const tls = opts.tls ? ["--tls-cert", opts.tls.cert, "--tls-key", opts.tls.key] : [];
  const child = spawn(
    process.execPath,
    [
      join(opts.root, SERVE_BIN),
      "serve",
      "--state",
      opts.stateDir,
      "--listen",
      `127.0.0.1:${opts.port ?? 0}`,
      ...tls,
      ...vars,
    ],
    {
      // Its own process group, so stop() ends serve and its workerd, and nothing else.
      detached: true,
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, MESH_ADMIN_TOKEN: opts.token },
    },
  );
  child.stderr?.pipe(log, { end: false });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const listening = new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout! }).on("line", (line) => {
      log.write(`${line}\n`);
      try {
        const record = JSON.parse(line) as { event?: string; url?: string };
        if (record.event === "serve:listening" && record.url) resolve(record.url);
      } catch {
        // Every line is JSON; anything else is logged as it is.
      }
    });
    void exited.then(() => reject(new Error(`mesh-broker serve exited with ${child.exitCode}; see ${opts.logFile}`)));
  });
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null && child.pid) {
      try {
        process.kill(-child.pid, "SIGTERM");
      } catch {
        // Already gone.
      }
      const timer = setTimeout(() => {
        try {
          if (child.pid) process.kill(-child.pid, "SIGKILL");
        } catch {
          // Already gone.
        }
      }, 15_000);
      await exited;
      clearTimeout(timer);
    }
    log.end();
  };
  const timeout = setTimeout(() => void stop(), 60_000);
  let url: string;
  try {
    url = await listening;
  } finally {
    clearTimeout(timeout);
  }
  // Listening is not yet serving: the first request loads the bundle.
  const dispatcher = opts.tls ? new Agent({ connect: { ca: await readFile(opts.tls.cert, "utf8") } }) : undefined;
  for (const deadline = Date.now() + 30_000; ; ) {
    try {
      if ((await undiciFetch(`${url}/healthz`, dispatcher ? { dispatcher } : {})).ok) break;
    } catch (error) {
      if (Date.now() > deadline) {
        await stop();
        throw error;
      }
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  await dispatcher?.close();
  return { url, token: opts.token, port: Number(new URL(url).port), process: child, stop };
}
