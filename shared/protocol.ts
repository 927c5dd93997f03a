/**
 * Every message of the wire protocol, defined once. Text WebSocket frames carry these JSON messages;
 * binary frames carry stream bytes (see frames.ts). Two sockets exist:
 *  - the control socket, agent ⇄ Mesh object: hello/welcome, assign, reject, disk, leave,
 *    probe/probe-result (health checks);
 *  - the data socket, agent ⇄ Unit object (one per unit): attach, payload pulls, results acks,
 *    started/finished, cancel.
 * Receivers go through the `decode*` functions below, which never throw.
 */
import { z } from "zod";
import type { DiskSpace as DiskSpaceFields } from "./disk.js";
import { type ErrorBody, type Result, fail, isErrorCode, ok } from "./errors.js";
import { HealthCheck } from "./health.js";
import { NAME_PATTERN, UNIT_ID_PATTERN } from "./ids.js";
import { UNIT_STATES } from "./states.js";

/**
 * 2: `attached` and `closed` say whether the broker holds the unit's exit (`exitRecorded`); an
 * agent of protocol 1 would drop a spool whose results the broker never stored.
 */
export const PROTOCOL_VERSION = 2;
/** Keepalive text both sockets answer with `PONG` via the runtime's auto-response. */
export const PING = "ping";
export const PONG = "pong";
/** Largest text frame (in UTF-16 code units) a peer may send; binary frames are bounded by MAX_FRAME_BYTES. */
export const MAX_TEXT_FRAME = 64 * 1024;
/** Largest unit signature (the `Mesh-Signature` header) the broker stores and passes on. */
export const MAX_SIGNATURE_CHARS = 8 * 1024;
/** Most units a node may declare it runs at once; `mesh-agent --capacity unlimited` declares this. */
export const MAX_CAPACITY = 100_000;

const nodeId = z.string().regex(NAME_PATTERN);
const unitId = z.string().regex(UNIT_ID_PATTERN);
const offset = z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER);
const errorBody = z.object({
  code: z.string().refine(isErrorCode),
  message: z.string(),
}) as unknown as z.ZodType<ErrorBody>;

export const WorkTypeAd = z.object({
  worktype: z.string().regex(NAME_PATTERN),
  /** receptor's "Secure": the node verifies signatures for this work type. */
  verifySignature: z.boolean(),
  allowRuntimeParams: z.boolean(),
  /**
   * The node starts a unit of this type from an assignment that carries its payload inline (`start`
   * below). Optional: agents before it send none and always attach and download first.
   */
  inlineStart: z.boolean().optional(),
  /**
   * The command reads a self-delimiting stream that does nothing before its end marker and fails
   * on a cut (ansible-runner worker), so the node may start it while the payload is still being
   * uploaded (`payloadStreaming` below). Optional: agents before it send none.
   */
  streamingPayload: z.boolean().optional(),
});
export type WorkTypeAd = z.infer<typeof WorkTypeAd>;

export const Versions = z.object({
  agent: z.string(),
  node: z.string(),
  ansibleRunner: z.string().nullable(),
  podman: z.string().nullable(),
  /** podman answered `podman info`: containers may run (whether `podman run` works is another matter). */
  podmanUsable: z.boolean(),
});
export type Versions = z.infer<typeof Versions>;

export const UnitParams = z.record(z.string(), z.string());

const bytes = z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER);
/** Free space on the agent's work dir and its --min-free (shared/disk.ts says what they mean). */
export const DiskSpace = z.object({ freeBytes: bytes, minFreeBytes: bytes }) satisfies z.ZodType<DiskSpaceFields>;

const Hello = z.object({
  type: z.literal("hello"),
  protocol: z.number().int(),
  nodeId,
  workTypes: z.array(WorkTypeAd).max(256),
  capacity: z.number().int().min(1).max(MAX_CAPACITY),
  tags: z.record(z.string(), z.string()),
  versions: Versions,
  /** Units this agent still holds (running, or finished with results not yet delivered). */
  units: z.array(unitId).max(100_000),
  /** Optional: agents before the disk report send none, and are never passed over for it. */
  disk: DiskSpace.optional(),
});

/** Sent when the work dir's free space crosses --min-free, and now and then as it changes. */
const Disk = z.object({ type: z.literal("disk"), disk: DiskSpace });

const Reject = z.object({ type: z.literal("reject"), unit: unitId, error: errorBody });

/**
 * The agent is leaving for good (--max-units, --idle-exit, --max-uptime): it takes no more units,
 * finishes those it holds, then closes. Its node is shown as left, not lost. A new hello undoes it.
 */
const Leave = z.object({ type: z.literal("leave"), reason: z.string().max(256) });

const probeId = z.string().regex(/^[A-Za-z0-9]{1,32}$/);

/** The answer to `probe`: the agent's own checks and its clock in the middle of running them (epoch ms; health.ts probeAgentTime). */
const ProbeResult = z.object({
  type: z.literal("probe-result"),
  id: probeId,
  agentTime: z.number(),
  checks: z.array(HealthCheck).max(16),
});

export const AgentControlMessage = z.discriminatedUnion("type", [Hello, Reject, Disk, Leave, ProbeResult]);
export type AgentControlMessage = z.infer<typeof AgentControlMessage>;
export type HelloMessage = z.infer<typeof Hello>;

export const Assignment = z.object({
  id: unitId,
  worktype: z.string(),
  params: UnitParams,
  /** The payload's length; while `payloadStreaming`, only the bytes received so far. */
  payloadSize: offset,
  /**
   * The payload is still being uploaded (a framed upload of unknown length): pulls past what is in
   * wait for it, and `payload-end` gives the final length. Only for a node whose work type has
   * streamingPayload. Absent: the payload is whole.
   */
  payloadStreaming: z.boolean().optional(),
  /** The submitter's signature over the unit (shared/signing.ts), passed through untouched. */
  signature: z.string().max(MAX_SIGNATURE_CHARS).nullable(),
  /** The node the submitter asked for, which a signature covers. */
  targetNode: z.string().nullable(),
  mesh: z.string(),
});
export type Assignment = z.infer<typeof Assignment>;

/**
 * Payloads up to this size may go inline in the assignment (base64, 4/3 of it), so the command
 * starts without a round trip; the whole `assign` must still fit a text frame (MAX_TEXT_FRAME), with
 * the unit's params and signature, else it goes without (fitsInline).
 */
export const INLINE_PAYLOAD_BYTES = 32 * 1024;

/** An assignment with everything needed to start the unit: what `attached` would say, and the payload. */
export const InlineStart = z.object({
  unit: Assignment,
  /** The whole payload, base64; its decoded length must be unit.payloadSize. */
  payload: z.string().max(Math.ceil(INLINE_PAYLOAD_BYTES / 3) * 4),
});
export type InlineStart = z.infer<typeof InlineStart>;

/** Base64 of `bytes`, with the btoa both the Worker and Node have (in slices: one call per byte would overflow the stack). */
export function toBase64(bytes: Uint8Array): string {
  let binary = "";
  for (let i = 0; i < bytes.byteLength; i += 8192) binary += String.fromCharCode(...bytes.subarray(i, i + 8192));
  return btoa(binary);
}

/** Whether an `assign` carrying `start` fits one text frame (the ids and names around it: < 512 characters). */
export function fitsInline(start: InlineStart): boolean {
  return JSON.stringify(start).length + 512 <= MAX_TEXT_FRAME;
}

export const BrokerControlMessage = z.discriminatedUnion("type", [
  z.object({
    type: z.literal("welcome"),
    nodeId,
    pingIntervalMs: z.number().int().positive(),
    /** Only when the agent joined with a join token: its own credential, to use from now on. */
    credential: z
      .string()
      .regex(/^mnc_[A-Za-z0-9_-]{43}$/)
      .optional(),
  }),
  /**
   * The agent answers by opening the unit's data socket, or with `reject`. With `start` (a small
   * payload, to a node whose work type has inlineStart), it may run the unit at once, before its
   * data socket is attached: the payload is whole (`payloadSize` bytes, checked), never a prefix.
   */
  z.object({ type: z.literal("assign"), unitId, worktype: z.string(), start: InlineStart.optional() }),
  /** A health check (`meshctl node check`): the agent answers with `probe-result`. */
  z.object({ type: z.literal("probe"), id: probeId }),
  z.object({ type: z.literal("error"), error: errorBody }),
]);
export type BrokerControlMessage = z.infer<typeof BrokerControlMessage>;

export const AgentDataMessage = z.discriminatedUnion("type", [
  z.object({ type: z.literal("attach"), protocol: z.number().int(), nodeId }),
  /** Ask for payload bytes [offset, offset+length); the broker answers with binary payload frames. */
  z.object({
    type: z.literal("payload-pull"),
    offset,
    length: z
      .number()
      .int()
      .positive()
      .max(16 << 20),
  }),
  z.object({ type: z.literal("started"), pid: z.number().int().nullable() }),
  z.object({
    type: z.literal("finished"),
    exitCode: z.number().int().nullable(),
    signal: z.string().nullable(),
    /** Total bytes of results; the broker only accepts the outcome once it stored all of them. */
    resultsSize: offset,
    canceled: z.boolean(),
    /** Set when the command could not run at all (spawn failure, refused unit). */
    detail: z.string().max(1024).optional(),
    /** What the work type's output cap cut from the results (shared/output-cap.ts); absent: nothing. */
    outputCut: z.object({ bytes: offset, lines: offset }).optional(),
  }),
]);
export type AgentDataMessage = z.infer<typeof AgentDataMessage>;

export const BrokerDataMessage = z.discriminatedUnion("type", [
  z.object({
    type: z.literal("attached"),
    unit: Assignment,
    state: z.enum(UNIT_STATES),
    /** Results bytes the broker holds durably: the agent resumes sending from here. */
    resultsOffset: offset,
    cancel: z.boolean(),
    /** The broker holds how the command ended: nothing of the unit is left for the agent to send. */
    exitRecorded: z.boolean(),
  }),
  z.object({ type: z.literal("results-ack"), offset }),
  /**
   * A streaming payload (Assignment.payloadStreaming) is whole: `size` bytes. Pulls beyond it get
   * nothing. If the upload breaks instead, the unit fails and `closed` follows.
   */
  z.object({ type: z.literal("payload-end"), size: offset }),
  z.object({ type: z.literal("cancel") }),
  /**
   * The unit reached a final state. The agent drops its spool only if the unit was released or the
   * broker holds its exit (`exitRecorded`); otherwise it stops the command and still sends what is
   * left and how it ended, which the broker stores as the unit's late exit.
   */
  z.object({ type: z.literal("closed"), state: z.enum(UNIT_STATES), exitRecorded: z.boolean() }),
  z.object({ type: z.literal("error"), error: errorBody }),
]);
export type BrokerDataMessage = z.infer<typeof BrokerDataMessage>;

function decodeWith<T>(schema: z.ZodType<T>, text: string): Result<T> {
  if (text.length > MAX_TEXT_FRAME) return fail("frame_too_large", `text frame over ${MAX_TEXT_FRAME} characters`);
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return fail("bad_message", "text frame is not JSON");
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue?.path.length ? ` at ${issue.path.join(".")}` : "";
    return fail("bad_message", `invalid message${where}: ${issue?.message ?? "does not match the protocol"}`);
  }
  return ok(parsed.data);
}

export const decodeAgentControl = (text: string) => decodeWith(AgentControlMessage, text);
export const decodeBrokerControl = (text: string) => decodeWith(BrokerControlMessage, text);
export const decodeAgentData = (text: string) => decodeWith(AgentDataMessage, text);
export const decodeBrokerData = (text: string) => decodeWith(BrokerDataMessage, text);

export const encode = (message: AgentControlMessage | BrokerControlMessage | AgentDataMessage | BrokerDataMessage) =>
  JSON.stringify(message);
