/**
 * The floor under the agent's idle RSS (docs/benchmarks.md, row 6): what the smallest programs
 * that could be an agent measure, each an idle process read from outside like the bench reads the
 * agent (VmRSS and private pages, 2.5 s after start, no forced GC). A local server answers the
 * WebSocket handshakes and keeps the sockets open. Run from a built tree, on any Node:
 *   node scripts/bench/minimal-agent-rss.mjs [ROOT]
 */
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";

const root = pathToFileURL(`${resolve(process.argv[2] ?? ".")}/`).href;
const server = createServer((_req, res) => res.writeHead(400).end());
server.on("upgrade", (req, socket) => {
  const accept = createHash("sha1")
    .update(`${req.headers["sec-websocket-key"]}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`)
    .digest("base64");
  socket.write(
    `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`,
  );
  socket.on("error", () => {});
});
await new Promise((done) => server.listen(0, "127.0.0.1", done));
const port = server.address().port;

const wait = "setInterval(() => {}, 1000);";
const ws = `const ws = new WebSocket("ws://127.0.0.1:${port}/"); ws.onopen = () => {}; ${wait}`;
const programs = [
  ["bare Node, a timer (CommonJS)", "idle.cjs", wait],
  ["bare Node, a timer (ES module, as the agent)", "idle.mjs", wait],
  [
    "+ node:tls and a TCP socket kept open (an RFC 6455 client's floor)",
    "tls.mjs",
    `import "node:tls"; import { connect } from "node:net"; connect(${port}, "127.0.0.1").on("error", () => {}); ${wait}`,
  ],
  ["+ Node's WebSocket, connected", "ws.mjs", ws],
  ["+ Node's WebSocket, connected, and zod", "ws-zod.mjs", `import "${root}node_modules/zod/index.js"; ${ws}`],
];

const dir = await mkdtemp(join(tmpdir(), "mesh-minimal-rss-"));
const kib = (text, pattern) => [...text.matchAll(pattern)].reduce((sum, m) => sum + Number(m[1]), 0);
for (const [label, file, source] of programs) {
  await writeFile(join(dir, file), source);
  const child = spawn(process.execPath, [join(dir, file)], { stdio: "ignore" });
  await new Promise((done) => setTimeout(done, 2500));
  const rss = kib(readFileSync(`/proc/${child.pid}/status`, "utf8"), /^VmRSS:\s+(\d+) kB/gm);
  const own = kib(readFileSync(`/proc/${child.pid}/smaps_rollup`, "utf8"), /^Private_(?:Clean|Dirty):\s+(\d+) kB/gm);
  child.kill();
  console.log(`${process.version} ${label}: ${(rss / 1024).toFixed(1)} MiB (${(own / 1024).toFixed(1)} private)`);
}
server.close();
server.closeAllConnections();
await rm(dir, { recursive: true });
