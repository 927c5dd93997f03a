/**
 * One error type for the whole system. Every failure a client or peer can see has a stable
 * `code` (for programs) and a one-line `message` (for people); the HTTP status is derived from
 * the code in exactly one table.
 */
export const ERROR_STATUS = {
  bad_request: 400,
  bad_offset: 400,
  bad_unit_id: 400,
  unknown_worktype: 400,
  node_lacks_worktype: 400,
  /** No node of the mesh has the tags a unit asks for (and the unit has no ttl to wait for one). */
  no_matching_node: 400,
  unauthorized: 401,
  forbidden: 403,
  node_taken: 409,
  unit_exists: 409,
  idempotency_mismatch: 409,
  limit_exceeded: 429,
  rate_limited: 429,
  unknown_unit: 404,
  unknown_token: 404,
  unknown_node: 404,
  unknown_route: 404,
  unit_released: 410,
  illegal_transition: 409,
  at_capacity: 409,
  payload_too_large: 413,
  length_required: 411,
  payload_incomplete: 400,
  upload_in_progress: 409,
  unsupported_media_type: 415,
  // Protocol errors travel in `error` frames over WebSockets; the status is what an HTTP
  // upgrade attempt carrying the same fault would get.
  bad_frame: 400,
  bad_message: 400,
  unsupported_protocol: 400,
  not_assigned: 409,
  /** The node is leaving (one-shot or draining agent): the unit goes back to the queue. */
  node_leaving: 409,
  /** A health check needs the node connected. */
  node_not_connected: 409,
  /** The node did not answer a health check in time (an agent too old for probes, or stuck). */
  probe_timeout: 504,
  results_gap: 409,
  results_incomplete: 409,
  window_exceeded: 400,
  frame_too_large: 413,
  internal: 500,
  // A wrangler.toml var (or serve --var) that is not well formed: the broker refuses to guess.
  misconfigured: 500,
} as const;

export type ErrorCode = keyof typeof ERROR_STATUS;

export interface ErrorBody {
  code: ErrorCode;
  message: string;
}

export class MeshError extends Error {
  readonly code: ErrorCode;
  readonly status: number;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "MeshError";
    this.code = code;
    this.status = ERROR_STATUS[code];
  }

  toBody(): { error: ErrorBody } {
    return { error: { code: this.code, message: this.message } };
  }
}

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === "string" && Object.hasOwn(ERROR_STATUS, value);
}

/** A value or a typed failure: what crosses DO RPC boundaries and what decoders return. */
export type Result<T> = { ok: true; value: T } | { ok: false; error: ErrorBody };

export const ok = <T>(value: T): Result<T> => ({ ok: true, value });
export const fail = <T = never>(code: ErrorCode, message: string): Result<T> => ({
  ok: false,
  error: { code, message },
});

export function unwrap<T>(result: Result<T>): T {
  if (!result.ok) throw new MeshError(result.error.code, result.error.message);
  return result.value;
}
