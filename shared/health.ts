/**
 * Node health checks (`meshctl node check ID`): the broker asks the agent for a probe over the
 * control socket; the agent runs `ansible-runner --version` (when a work type runs ansible-runner),
 * `podman info` (when podman is installed), and samples its work dir's free space; the broker adds
 * the clock skew it measures from the round trip. A node whose last report failed is passed over by
 * dispatch until a later check passes.
 */
import { z } from "zod";

export const HealthCheck = z.object({
  name: z.enum(["ansible-runner", "podman", "disk", "clock"]),
  ok: z.boolean(),
  detail: z.string().max(1024),
});
export type HealthCheck = z.infer<typeof HealthCheck>;

export interface HealthReport {
  /** When the broker received the probe's answer. */
  at: string;
  ok: boolean;
  /** The agent's clock minus the broker's, estimated at the middle of the round trip (ms). */
  skewMs: number;
  checks: HealthCheck[];
}

/** A clock off by more than this makes signed-work expiry and ttl judgements wrong: a failed check. */
export const MAX_SKEW_MS = 30_000;

/**
 * The clock an agent reports for a probe: the middle of its own answer time (from the probe's
 * arrival to its answer), which the broker sets against the middle of the round trip. The checks
 * take seconds (podman info); stamping the answer's end would read as skew half of that.
 */
export function probeAgentTime(probeArrivedAt: number, answeredAt: number): number {
  return Math.round((probeArrivedAt + answeredAt) / 2);
}

/** The broker's verdict on an agent's checks, adding the clock check from the round trip's times. */
export function judgeHealth(
  checks: readonly HealthCheck[],
  times: { sentAt: number; receivedAt: number; agentTime: number },
): HealthReport {
  const skewMs = Math.round(times.agentTime - (times.sentAt + times.receivedAt) / 2);
  const clock: HealthCheck = {
    name: "clock",
    ok: Math.abs(skewMs) <= MAX_SKEW_MS,
    detail: `skew ${skewMs} ms vs the broker (±${times.receivedAt - times.sentAt} ms round trip; at most ±${MAX_SKEW_MS} ms)`,
  };
  const all = [...checks.filter((c) => c.name !== "clock"), clock];
  return { at: new Date(times.receivedAt).toISOString(), ok: all.every((c) => c.ok), skewMs, checks: all };
}

/** What failed, as one line (`ansible-runner: not found`), or null when the report passed. */
export function healthFailure(report: HealthReport): string | null {
  const failed = report.checks.filter((c) => !c.ok);
  return failed.length === 0 ? null : failed.map((c) => `${c.name}: ${c.detail}`).join("; ");
}
