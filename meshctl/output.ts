/** What meshctl shows people: the status table and, at a terminal only, a progress line. */
import type { WriteStream } from "node:tty";
import type { Writable } from "node:stream";
import type { MeshStatus, NodeStatus } from "../shared/unit.js";
import type { MeshClient } from "./client.js";

/** `left` and `hold` are absent from brokers before fleet operations: read as not set. */
function nodeState(n: NodeStatus): string {
  if (n.left) return "left";
  if (n.lost) return "lost";
  if (n.unreachable) return `unreachable since ${n.unreachableSince ?? "?"}`;
  if (!n.connected) return "gone";
  return n.paused ? "connected, paused" : n.hold === "leaving" ? "connected, leaving" : "connected";
}

export function printStatus(status: MeshStatus, out: Writable): void {
  const rows = status.nodes.map((n) => [
    n.nodeId,
    nodeState(n),
    `${n.activeUnits}/${n.capacity}`,
    n.workTypes.map((w) => w.worktype).join(","),
    Object.entries(n.tags)
      .map(([k, v]) => `${k}=${v}`)
      .join(",") || "-",
    n.lastSeen ?? "-",
  ]);
  const header = ["NODE", "STATE", "UNITS", "WORK TYPES", "TAGS", "LAST SEEN"];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  for (const row of [header, ...rows])
    out.write(
      `${row
        .map((c, i) => c.padEnd(widths[i]!))
        .join("  ")
        .trimEnd()}\n`,
    );
  // Why a node takes no units; `lowDisk` is absent from brokers before the disk report.
  for (const n of status.nodes) if (n.lowDisk) out.write(`\nnode ${n.nodeId} takes no units: ${n.lowDisk}`);
  for (const n of status.nodes)
    if (n.connected && n.hold && !n.lowDisk) out.write(`\nnode ${n.nodeId} takes no new units: ${n.hold}`);
  out.write(`\nmesh ${status.mesh}: ${status.units.pending} pending, ${status.units.running} running\n`);
}

const FRAMES = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"];

/** A spinner with the unit's state, redrawn on stderr; silent when stderr is not a terminal. */
export class Progress {
  private timer: NodeJS.Timeout | null = null;
  private state = "Pending";

  constructor(
    private readonly err: NodeJS.WriteStream | WriteStream,
    private readonly id: string,
  ) {}

  start(client: MeshClient): void {
    if (!this.err.isTTY) return;
    let frame = 0;
    let polling = false;
    this.timer = setInterval(() => {
      this.err.write(`\r${FRAMES[frame++ % FRAMES.length]} unit ${this.id} ${this.state}\x1b[K`);
      if (frame % 10 === 0 && !polling) {
        polling = true;
        client
          .unit(this.id)
          .then((u) => (this.state = u.state))
          .catch(() => undefined)
          .finally(() => (polling = false));
      }
    }, 100);
    this.timer.unref();
  }

  stop(): void {
    if (!this.timer) return;
    clearInterval(this.timer);
    this.err.write("\r\x1b[K");
  }
}
