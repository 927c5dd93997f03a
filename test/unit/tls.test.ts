import { mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { rootCertificates } from "node:tls";
import { describe, expect, it } from "vitest";
import { loadCaFile, plainHttpWarning } from "../../shared/node/tls.js";

describe("plain http warning", () => {
  it.each([
    "http://127.0.0.1:8787",
    "http://127.1.2.3",
    "http://localhost:8787/",
    "http://mesh.localhost",
    "http://[::1]:8787",
    "https://broker.example.com",
    "https://10.0.0.5:8443",
    "not a url",
  ])("none for %s", (url) => {
    expect(plainHttpWarning(url)).toBeUndefined();
  });

  it.each([
    "http://broker.example.com",
    "http://10.0.0.5:8787",
    "http://[fe80::1]:80",
    "http://127.0.0.1.example.com",
    "http://localhost.example.com",
  ])("loud for %s", (url) => {
    expect(plainHttpWarning(url)).toMatch(/^WARNING: .* plain http: tokens .* unencrypted; use https:\/\//);
  });
});

describe("--ca-file", () => {
  const PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----";

  it("adds the file's certificates to Node's roots", async () => {
    const dir = await mkdtemp(join(tmpdir(), "mesh-ca-"));
    await writeFile(join(dir, "ca.pem"), `subject=CN=x\n${PEM}\n${PEM}\n`);
    const ca = await loadCaFile(join(dir, "ca.pem"));
    expect(ca.length).toBe(rootCertificates.length + 2);
    expect(ca.at(-1)).toBe(PEM);
  });

  it("refuses a file without a certificate (a key given by mistake)", async () => {
    const dir = await mkdtemp(join(tmpdir(), "mesh-ca-"));
    await writeFile(join(dir, "key.pem"), "-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n");
    await expect(loadCaFile(join(dir, "key.pem"))).rejects.toThrow(/no PEM certificate/);
  });
});
