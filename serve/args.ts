/**
 * `mesh-broker serve` arguments. The admin token is deliberately not among them: anything on a
 * command line is readable by every local user (/proc/PID/cmdline, ps), so it comes from
 * MESH_ADMIN_TOKEN or a file.
 */
export const USAGE = `usage: mesh-broker serve --state DIR --listen HOST:PORT [--tls-cert FILE --tls-key FILE]
                          [--admin-token-file FILE] [--var NAME=VALUE]...

  --state DIR              Durable Objects' SQLite files and the generated workerd config (made 0700)
  --listen HOST:PORT       address to listen on (port 0: any free port, logged when listening)
  --tls-cert, --tls-key    PEM certificate chain and private key: serve HTTPS/WSS
  --admin-token-file FILE  the admin token (otherwise MESH_ADMIN_TOKEN; never on the command line)
  --var NAME=VALUE         override one of wrangler.toml's [vars] (timeouts, limits)`;

export interface ServeArgs {
  state: string;
  listen: { host: string; port: number };
  tls?: { cert: string; key: string };
  adminTokenFile?: string;
  vars: Record<string, string>;
}

export type Parsed = { ok: true; value: ServeArgs } | { ok: false; error: string };

/** host:port, [v6]:port. The host must be an address workerd can bind, not empty. */
export function parseListen(text: string): { host: string; port: number } | undefined {
  const match = /^(\[[0-9a-fA-F:.]+\]|[^:[\]\s]+):(\d{1,5})$/.exec(text);
  if (!match) return undefined;
  const port = Number(match[2]);
  if (port > 65535) return undefined;
  return { host: match[1]!, port };
}

const VAR_NAME = /^[A-Z][A-Z0-9_]*$/;

export function parseServeArgs(argv: readonly string[], knownVars: readonly string[]): Parsed {
  if (argv[0] !== "serve") return { ok: false, error: argv[0] ? `unknown command ${argv[0]}` : "missing command" };
  let state: string | undefined;
  let listen: ServeArgs["listen"] | undefined;
  let cert: string | undefined;
  let key: string | undefined;
  let adminTokenFile: string | undefined;
  const vars: Record<string, string> = {};
  for (let i = 1; i < argv.length; i++) {
    const flag = argv[i]!;
    const [name, inline] =
      flag.startsWith("--") && flag.includes("=")
        ? [flag.slice(0, flag.indexOf("=")), flag.slice(flag.indexOf("=") + 1)]
        : [flag, undefined];
    const takesValue = ["--state", "--listen", "--tls-cert", "--tls-key", "--admin-token-file", "--var"].includes(name);
    if (name === "--admin-token" || name === "--token") {
      return {
        ok: false,
        error: `${name} is refused: a command line is readable by every local user; use MESH_ADMIN_TOKEN or --admin-token-file`,
      };
    }
    if (!takesValue) return { ok: false, error: `unknown option ${flag}` };
    const value = inline ?? argv[++i];
    if (value === undefined || value === "") return { ok: false, error: `${name} needs a value` };
    switch (name) {
      case "--state":
        state = value;
        break;
      case "--listen":
        listen = parseListen(value);
        if (!listen) return { ok: false, error: `--listen wants HOST:PORT, got ${value}` };
        break;
      case "--tls-cert":
        cert = value;
        break;
      case "--tls-key":
        key = value;
        break;
      case "--admin-token-file":
        adminTokenFile = value;
        break;
      case "--var": {
        const eq = value.indexOf("=");
        const varName = eq > 0 ? value.slice(0, eq) : "";
        if (!VAR_NAME.test(varName)) return { ok: false, error: `--var wants NAME=VALUE, got ${value}` };
        if (!knownVars.includes(varName))
          return { ok: false, error: `--var ${varName}: not one of wrangler.toml's vars (${knownVars.join(", ")})` };
        vars[varName] = value.slice(eq + 1);
        break;
      }
    }
  }
  if (!state) return { ok: false, error: "--state DIR is required" };
  if (!listen) return { ok: false, error: "--listen HOST:PORT is required" };
  if ((cert === undefined) !== (key === undefined)) return { ok: false, error: "--tls-cert and --tls-key go together" };
  return {
    ok: true,
    value: {
      state,
      listen,
      ...(cert && key ? { tls: { cert, key } } : {}),
      ...(adminTokenFile ? { adminTokenFile } : {}),
      vars,
    },
  };
}
