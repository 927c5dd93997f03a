/**
 * Trusting a broker's private CA (--ca-file) and warning about cleartext links. Tokens travel in
 * every request's Authorization header, so plain http:// is only safe on the loopback interface.
 */
import { readFile } from "node:fs/promises";
import { rootCertificates } from "node:tls";

/** True for names and addresses that never leave the machine. */
export function isLoopback(hostname: string): boolean {
  const host = hostname.replace(/^\[|\]$/g, "").toLowerCase();
  return (
    host === "localhost" ||
    host.endsWith(".localhost") ||
    /^127(\.\d{1,3}){3}$/.test(host) ||
    host === "::1" ||
    host === "::ffff:127.0.0.1"
  );
}

/** The warning to print for a broker URL, or undefined when the link is encrypted or local. */
export function plainHttpWarning(broker: string): string | undefined {
  let url: URL;
  try {
    url = new URL(broker);
  } catch {
    return undefined;
  }
  if (url.protocol !== "http:" || isLoopback(url.hostname)) return undefined;
  return `WARNING: ${url.origin} is plain http: tokens and every unit's payload and results cross the network unencrypted; use https://`;
}

/**
 * The CAs to trust with --ca-file: Node's own roots plus the file's certificates, so a broker
 * behind a public certificate (a reverse proxy) still verifies too, as NODE_EXTRA_CA_CERTS does.
 */
export async function loadCaFile(path: string): Promise<string[]> {
  const pem = await readFile(path, "utf8");
  const certificates = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g);
  if (!certificates) throw new Error(`${path} holds no PEM certificate (-----BEGIN CERTIFICATE-----)`);
  return [...rootCertificates, ...certificates];
}
