/** `meshctl control-service`: the receptor control socket, running until SIGINT or SIGTERM. */
import type { KeyObject } from "node:crypto";
import { availableParallelism, hostname, totalmem } from "node:os";
import { createLogger } from "../../shared/node/log.js";
import type { MeshClient } from "../client.js";
import { loadSigningKey } from "../sign.js";
import { startControlService } from "./server.js";

const LOOPBACK = new Set(["127.0.0.1", "::1", "localhost"]);

/**
 * `PORT`, `HOST:PORT` or `[::1]:PORT`, loopback only: the TCP listener has no authentication (as in
 * receptor), so anyone who can reach it acts with the bridge's token.
 */
export function parseTcpAddress(text: string): { host: string; port: number } | { error: string } {
  const match = /^(?:(\[[^\]]+\]|[^:]+):)?(\d{1,5})$/.exec(text);
  if (!match) return { error: `--tcp takes PORT or HOST:PORT, got "${text}"` };
  const host = (match[1] ?? "127.0.0.1").replace(/^\[(.*)\]$/, "$1");
  const port = Number(match[2]);
  if (port > 65535) return { error: `--tcp: port ${port} is out of range` };
  if (!LOOPBACK.has(host))
    return {
      error: `--tcp: ${host} is not a loopback address; the control socket is unauthenticated, so it listens on 127.0.0.1, ::1 or localhost only`,
    };
  return { host, port };
}

/** Whether `url` keeps what it carries off the network in the clear: HTTPS, or a loopback host. */
export function isSecureLink(url: string): boolean {
  const { protocol, hostname } = new URL(url);
  return protocol === "https:" || LOOPBACK.has(hostname.replace(/^\[(.*)\]$/, "$1"));
}

export async function runControlService(opts: {
  client: MeshClient;
  brokerUrl: string;
  mesh: string;
  socketPath: string;
  tcp: { host: string; port: number } | undefined;
  nodeId: string | undefined;
  signingKeyPath: string | undefined;
}): Promise<number> {
  const log = createLogger("info");
  const signingKey: KeyObject | null = opts.signingKeyPath ? await loadSigningKey(opts.signingKeyPath) : null;
  const nodeId = opts.nodeId ?? hostname();
  const service = await startControlService({
    socketPath: opts.socketPath,
    tcp: opts.tcp,
    broker: opts.client,
    mesh: opts.mesh,
    signingKey,
    secureLink: isSecureLink(opts.brokerUrl),
    log,
    bridge: () => ({
      nodeId,
      cpuCount: availableParallelism(),
      memoryMiB: Math.floor(totalmem() / 1024 / 1024),
      now: new Date(),
    }),
  });
  const signal = await new Promise<NodeJS.Signals>((resolve) => {
    process.once("SIGINT", () => resolve("SIGINT"));
    process.once("SIGTERM", () => resolve("SIGTERM"));
  });
  log.info("control:stopping", { signal });
  await service.close();
  return 0;
}
