/**
 * Health checks in flight: the Mesh object sends `probe` on a node's control socket and the RPC
 * that asked waits here for the `probe-result`, up to PROBE_TIMEOUT_MS. In memory only: a probe
 * lives as long as the RPC that waits for it, which keeps the object awake meanwhile.
 */
import type { HealthCheck } from "../../shared/health.js";

/** ansible-runner --version and podman info take a few seconds on a cold host; 15 s each at most on the agent. */
export const PROBE_TIMEOUT_MS = 35_000;

export interface ProbeAnswer {
  nodeId: string;
  agentTime: number;
  receivedAt: number;
  checks: HealthCheck[];
}

export class Probes {
  private readonly pending = new Map<string, { nodeId: string; settle: (answer: ProbeAnswer | null) => void }>();
  private next = 0;

  /** A new probe id for `nodeId`, and the answer (null on timeout). */
  start(nodeId: string, timeoutMs = PROBE_TIMEOUT_MS): { id: string; answer: Promise<ProbeAnswer | null> } {
    const id = `p${Date.now().toString(36)}${(this.next++).toString(36)}`;
    const answer = new Promise<ProbeAnswer | null>((resolve) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        resolve(null);
      }, timeoutMs);
      this.pending.set(id, {
        nodeId,
        settle: (a) => {
          clearTimeout(timer);
          this.pending.delete(id);
          resolve(a);
        },
      });
    });
    return { id, answer };
  }

  /** A `probe-result` arrived; ignored unless it answers a probe sent to that very node. */
  settle(id: string, answer: ProbeAnswer): boolean {
    const probe = this.pending.get(id);
    if (!probe || probe.nodeId !== answer.nodeId) return false;
    probe.settle(answer);
    return true;
  }
}
