/**
 * The agent's idle memory by step, outside the bench (docs/benchmarks.md, row 6): a bare Node, then
 * the agent's modules from dist/, then its link opened (to a closed port: the WebSocket is loaded,
 * nothing connects), each after two full GCs. Run from a built tree, on any Node:
 *   node --expose-gc scripts/bench/agent-modules-rss.mjs [ROOT]
 */
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";

const root = pathToFileURL(`${resolve(process.argv[2] ?? ".")}/`).href;
const rss = () => {
  globalThis.gc();
  globalThis.gc();
  const m = process.memoryUsage();
  return `${(m.rss / 2 ** 20).toFixed(1)} MiB (heap ${(m.heapUsed / 2 ** 20).toFixed(1)})`;
};
const bare = rss();
await import(`${root}dist/agent/agent.js`);
await import(`${root}dist/agent/config.js`);
const modules = rss();
const { openLink } = await import(`${root}dist/agent/socket.js`);
await openLink("ws://127.0.0.1:9/", "t", { onText() {}, onBinary() {} }, 10_000).catch(() => undefined);
await new Promise((r) => setTimeout(r, 500));
console.log(`${process.version}: bare ${bare}; agent modules ${modules}; link opened ${rss()}`);
