// @ts-check
/**
 * The broker's HTTP API as the dashboard uses it: every call carries the session's token, and error
 * answers ({"error": {code, message}}) become an ApiError with the broker's code.
 */

/**
 * @typedef {object} Whoami
 * @property {"token" | "node"} kind
 * @property {string | null} role
 * @property {string | null} tokenId
 * @property {string | null} nodeId
 * @property {{ read: boolean, submit: boolean, manage: boolean }} may
 */

/**
 * @typedef {object} NodeStatus
 * @property {string} nodeId
 * @property {boolean} connected
 * @property {boolean} unreachable
 * @property {string | null} unreachableSince
 * @property {boolean} lost
 * @property {{ worktype: string }[]} workTypes
 * @property {number} capacity
 * @property {number} activeUnits
 * @property {Record<string, string>} tags
 * @property {{ agent: string, node: string, ansibleRunner: string | null, podman: string | null }} versions
 * @property {string | null} lastSeen
 * @property {string | null} [lowDisk]  why the node takes no units ("low disk: 12 MiB free < 256 MiB")
 * @property {boolean} [paused]  paused by an admin
 * @property {boolean} [left]  the agent left cleanly (one-shot, idle)
 * @property {string | null} [hold]  why the broker gives it no new units (paused, leaving, failed check)
 * @property {{ ok: boolean, at: string, checks: { name: string, ok: boolean, detail: string }[] } | null} [health]  its last health check
 */

/** @typedef {{ mesh: string, nodes: NodeStatus[], units: { pending: number, running: number } }} MeshStatus */

/**
 * @typedef {object} UnitSummary
 * @property {string} id
 * @property {string} worktype
 * @property {string | null} node
 * @property {string[]} [tags]  tags its node must have
 * @property {number} [priority]
 * @property {string} state
 * @property {string} detail
 * @property {string} createdAt
 * @property {string} updatedAt
 * @property {string | null} [startedAt]
 * @property {string | null} [finishedAt]
 */

/**
 * @typedef {{ exitCode: number | null, signal: string | null, detail: string, at: string, lateBytes: number }} LateExit
 * @typedef {UnitSummary & { exitCode: number | null, startedAt: string | null, finishedAt: string | null, stdoutSize: number, lateExit: LateExit | null }} UnitRecord
 */

/** An error answer from the broker; `message` reads "code: message". */
export class ApiError extends Error {
  /**
   * @param {number} status
   * @param {string} code
   * @param {string} message
   */
  constructor(status, code, message) {
    super(`${code}: ${message}`);
    this.status = status;
    this.code = code;
  }
}

/**
 * The ApiError for an error answer.
 * @param {Response} response
 */
export async function readError(response) {
  let code = "http_error";
  let message = `HTTP ${response.status}`;
  try {
    const body = /** @type {{ error?: { code?: string, message?: string } } | null} */ (await response.json());
    code = body?.error?.code ?? code;
    message = body?.error?.message ?? message;
  } catch {
    // Not JSON: the status says enough.
  }
  return new ApiError(response.status, code, message);
}

/**
 * Tells the page its token no longer holds (revoked, or the node removed): the session ends
 * instead of views retrying with a dead token.
 * @param {number} status
 */
export function noteUnauthorized(status) {
  const page = /** @type {{ dispatchEvent?: (event: Event) => boolean }} */ (globalThis);
  if (status === 401) page.dispatchEvent?.(new Event("mesh:unauthorized"));
}

/** One mesh, one token. */
export class Api {
  /**
   * @param {string} mesh
   * @param {string} token
   */
  constructor(mesh, token) {
    this.mesh = mesh;
    this.token = token;
    this.base = `/v1/meshes/${encodeURIComponent(mesh)}`;
  }

  /**
   * @param {string} path  below /v1/meshes/:mesh
   * @param {RequestInit} [init]
   * @returns {Promise<Response>}
   */
  async fetch(path, init = {}) {
    const response = await fetch(this.base + path, {
      ...init,
      headers: { authorization: `Bearer ${this.token}`, ...init.headers },
    });
    if (!response.ok) {
      noteUnauthorized(response.status);
      throw await readError(response);
    }
    return response;
  }

  /**
   * @param {string} path
   * @param {RequestInit} [init]
   * @returns {Promise<any>} the body as the broker sent it (its shapes are the typedefs above)
   */
  async json(path, init) {
    return (await this.fetch(path, init)).json();
  }

  /** @returns {Promise<Whoami>} */
  whoami() {
    return this.json("/whoami");
  }

  /** @returns {Promise<MeshStatus>} */
  status() {
    return this.json("/status");
  }

  /** @returns {Promise<UnitSummary[]>} */
  units() {
    return this.json("/units");
  }

  /** @returns {Promise<string>} the mesh's metrics, Prometheus' text format */
  async metrics() {
    return (await this.fetch("/metrics")).text();
  }

  /**
   * @param {string} node
   * @param {"pause" | "resume" | "check"} action
   * @returns {Promise<any>}
   */
  nodeAction(node, action) {
    return this.json(`/nodes/${encodeURIComponent(node)}/${action}`, { method: "POST" });
  }

  /**
   * @param {string} id
   * @returns {Promise<UnitRecord>}
   */
  unit(id) {
    return this.json(`/units/${id}`);
  }

  /** @param {string} id */
  cancel(id) {
    return this.json(`/units/${id}/cancel`, { method: "POST" });
  }

  /** @param {string} id */
  release(id) {
    return this.json(`/units/${id}`, { method: "DELETE" });
  }

  /**
   * The unit's artifacts as a tar file.
   * @param {string} id
   */
  async artifacts(id) {
    return (await this.fetch(`/units/${id}/artifacts`)).blob();
  }

  /** @param {string} id */
  unitEventsUrl(id) {
    return `${this.base}/units/${id}/events`;
  }

  /** From now on: the lists were just loaded, so the mesh's history need not be replayed. */
  meshEventsUrl() {
    return `${this.base}/events?after=latest`;
  }
}
