#!/usr/bin/env node
/**
 * `mesh-broker serve`: the broker Worker, its Durable Objects (SQLite on local disk, alarms) and
 * the dashboard on the `workerd` runtime, from the bundle built ahead of time in dist/broker (the
 * one `wrangler deploy` uploads), with a generated config and nothing of a development server.
 * SIGTERM or SIGINT stops workerd and waits for it; every unit is in the state directory.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { chmod, mkdir, readFile, stat, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { dirname, join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { misconfiguredBroker } from "../shared/broker-config.js";
import { USAGE, parseServeArgs } from "./args.js";
import { serveLine, workerdLine } from "./log.js";
import { MANIFEST_FILE, Manifest } from "./manifest.js";
import { secretEnv, workerdConfig } from "./workerd-config.js";

/** The built broker: dist/broker beside this file's dist/serve. */
const BUNDLE_DIR = resolve(dirname(fileURLToPath(import.meta.url)), "../broker");
/**
 * How long workerd has to exit after SIGTERM before it is killed. workerd waits for open
 * connections to end, and agent links and followers never do by themselves; every acknowledged
 * Durable Object write is already on disk, and the clients reconnect and resume, so a short drain.
 */
const STOP_TIMEOUT_MS = 2_000;

function emit(record: object): void {
  process.stdout.write(`${JSON.stringify(record)}\n`);
}

function fail(message: string, code = 1): never {
  emit(serveLine("error", "serve:error", { message }));
  process.exit(code);
}

function workerdBinary(): string {
  try {
    // The `workerd` package's main module exports the path of the platform's binary.
    return (createRequire(import.meta.url)("workerd") as { default: string }).default;
  } catch {
    return fail(
      "the workerd package is not installed: npm install workerd (the version in package.json's devDependencies)",
    );
  }
}

async function adminToken(file: string | undefined): Promise<string> {
  const fromEnv = process.env[secretEnv("ADMIN_TOKEN")];
  if (file && fromEnv) fail("both MESH_ADMIN_TOKEN and --admin-token-file are set; give one", 2);
  const token = file
    ? (await readFile(file, "utf8").catch((e: Error) => fail(`--admin-token-file: ${e.message}`))).trim()
    : fromEnv?.trim();
  if (!token) fail("no admin token: set MESH_ADMIN_TOKEN or --admin-token-file FILE", 2);
  if (/\s/.test(token)) fail("the admin token must not contain whitespace", 2);
  return token;
}

/** The state directory, made or narrowed to 0700: it holds every mesh's tokens (hashed) and results. */
async function stateDir(path: string): Promise<string> {
  const dir = resolve(path);
  await mkdir(join(dir, "do"), { recursive: true, mode: 0o700 });
  for (const d of [dir, join(dir, "do")]) {
    if (((await stat(d)).mode & 0o077) !== 0) {
      await chmod(d, 0o700);
      emit(serveLine("warn", "serve:state-mode", { path: d, message: "was readable by others; made 0700" }));
    }
  }
  return dir;
}

async function main(): Promise<void> {
  const manifest = Manifest.parse(
    JSON.parse(
      await readFile(join(BUNDLE_DIR, MANIFEST_FILE), "utf8").catch(() =>
        fail(`no built broker in ${BUNDLE_DIR}: npm run build`),
      ),
    ),
  );
  const parsed = parseServeArgs(process.argv.slice(2), Object.keys(manifest.vars));
  if (!parsed.ok) {
    process.stderr.write(`mesh-broker: ${parsed.error}\n${USAGE}\n`);
    process.exit(2);
  }
  const args = parsed.value;
  // The Worker would refuse every request with this line; say it now instead of serving errors.
  const misconfigured = misconfiguredBroker({ ...manifest.vars, ...args.vars });
  if (misconfigured !== null) {
    process.stderr.write(`mesh-broker: ${misconfigured}\n`);
    process.exit(2);
  }
  const token = await adminToken(args.adminTokenFile);
  const dir = await stateDir(args.state);
  const tls = args.tls && { cert: resolve(args.tls.cert), key: resolve(args.tls.key) };
  for (const file of tls ? [tls.cert, tls.key] : [])
    await readFile(file).catch((e: Error) => fail(`TLS: ${e.message}`));
  const config = join(dir, "workerd.capnp");
  const listen = `${args.listen.host}:${args.listen.port}`;
  await writeFile(
    config,
    workerdConfig({ ...manifest, vars: { ...manifest.vars, ...args.vars } }, BUNDLE_DIR, {
      doDir: join(dir, "do"),
      listen,
      tls,
    }),
    {
      mode: 0o600,
    },
  );

  // -I /: the config embeds the bundle and the PEM files by absolute path. fd 3: workerd reports
  // each socket's port there once it listens. No --inspector-addr, --watch, --debug-port, --verbose.
  // Through sh only to raise the soft open-file limit to the hard one first: workerd holds ~7
  // descriptors per agent connection, and a 1,024 soft limit would cap a broker at ~140 agents
  // (raise the hard limit itself with systemd's LimitNOFILE=). exec keeps workerd's PID.
  const raiseFiles = 'ulimit -n "$(ulimit -Hn)" 2>/dev/null; exec "$@"';
  const child: ChildProcess = spawn(
    "sh",
    ["-c", raiseFiles, "sh", workerdBinary(), "serve", "-I", "/", "--control-fd", "3", config],
    {
      stdio: ["ignore", "pipe", "pipe", "pipe"],
      env: { ...process.env, [secretEnv("ADMIN_TOKEN")]: token },
    },
  );
  for (const stream of ["stdout", "stderr"] as const) {
    createInterface({ input: child[stream]! }).on("line", (line) => {
      const record = workerdLine(line, stream, new Date());
      if (record) emit(record);
    });
  }
  const scheme = tls ? "https" : "http";
  createInterface({ input: child.stdio[3] as NodeJS.ReadableStream }).on("line", (line) => {
    try {
      const message = JSON.parse(line) as { event?: string; port?: number };
      if (message.event === "listen")
        emit(
          serveLine("info", "serve:listening", { url: `${scheme}://${args.listen.host}:${message.port}`, state: dir }),
        );
    } catch {
      // Not a control message we know.
    }
  });

  let stopping = false;
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    emit(serveLine("info", "serve:stopping", { signal }));
    child.kill("SIGTERM");
    setTimeout(() => {
      emit(serveLine("warn", "serve:kill", { message: `workerd still running ${STOP_TIMEOUT_MS} ms after SIGTERM` }));
      child.kill("SIGKILL");
    }, STOP_TIMEOUT_MS).unref();
  };
  process.on("SIGTERM", () => stop("SIGTERM"));
  process.on("SIGINT", () => stop("SIGINT"));
  child.once("exit", (code, signal) => {
    emit(serveLine(stopping ? "info" : "error", "serve:stopped", { code, signal }));
    process.exit(stopping ? 0 : (code ?? 1) || 1);
  });
}

main().catch((error: unknown) => fail(error instanceof Error ? error.message : String(error)));
