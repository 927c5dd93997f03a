/** Units: submit (the payload streamed to the unit's object), list, status, cancel, release. */
import { parseDuration } from "../../shared/duration.js";
import { MeshError, unwrap } from "../../shared/errors.js";
import { NAME_PATTERN, UNIT_ID_PATTERN } from "../../shared/ids.js";
import { parsePriority, parseTagSelector } from "../../shared/placement.js";
import { PAYLOAD_FRAMING, PAYLOAD_FRAMING_HEADER } from "../../shared/payload-framing.js";
import { MAX_SIGNATURE_CHARS } from "../../shared/protocol.js";
import type { Principal } from "../../shared/roles.js";
import type { UnitRecord, UnitSummary } from "../../shared/unit.js";
import type { UnitIndexRow } from "../mesh/store.js";
import { brokerConfig } from "../../shared/broker-config.js";
import { meshObject, unitObject } from "../stubs.js";
import { type App, type Ctx, asResult, can, meshName, unitId } from "./context.js";

/**
 * `GET /units?records=1` answers whole records, one Unit object call each: bounded so one list stays
 * well inside a request's subrequest budget (1,000 on Cloudflare's paid plan), fetched a few at a time.
 */
const MAX_LISTED_RECORDS = 500;
const RECORD_BATCH = 16;
const submitterOf = (principal: Principal) =>
  principal.kind === "token" ? `token:${principal.tokenId}` : `node:${principal.nodeId}`;

export function unitRoutes(app: App): void {
  app.post("/v1/meshes/:mesh/units", async (c) => {
    const mesh = meshName(c);
    can(c, "submit");
    try {
      return await submit(c, mesh);
    } catch (error) {
      // Refused before its body was read (an unknown work type, a bad query, a quota): read the body
      // to its end first (at most the payload limit). A client still sending a streamed payload
      // (meshctl -p -) would otherwise see its connection break mid-upload instead of the answer.
      await drain(c.req.raw.body, brokerConfig(c.env).maxPayloadBytes + DRAIN_SLACK);
      throw error;
    }
  });

  app.get("/v1/meshes/:mesh/units", async (c) => {
    const mesh = meshName(c);
    can(c, "read");
    const origin = c.req.query("origin") ?? null;
    if (origin !== null && !NAME_PATTERN.test(origin))
      throw new MeshError("bad_request", "origin names are 1-64 characters of [A-Za-z0-9._-]");
    const units = await meshObject(c.env, mesh).listUnits(origin);
    if (c.req.query("records") !== "1") return c.json(units);
    // Whole status records in one answer (the control-service bridge's `work list`): one RPC per
    // unit here instead of one request per unit from the client. Tombstones are left out.
    const live = units.filter((u: UnitSummary) => u.state !== "Released");
    if (live.length > MAX_LISTED_RECORDS) {
      throw new MeshError(
        "limit_exceeded",
        `${live.length} units match; records=1 lists at most ${MAX_LISTED_RECORDS} (release finished units, or narrow with ?origin=)`,
      );
    }
    const records: UnitRecord[] = [];
    for (let i = 0; i < live.length; i += RECORD_BATCH) {
      const batch = await Promise.all(
        live.slice(i, i + RECORD_BATCH).map((u: UnitSummary) => unitObject(c.env, mesh, u.id).status()),
      );
      for (const result of batch) if (result.ok && result.value.state !== "Released") records.push(result.value);
    }
    return c.json(records);
  });

  app.get("/v1/meshes/:mesh/units/:id", async (c) => {
    const mesh = meshName(c);
    can(c, "read");
    return c.json(asResult(await unitObject(c.env, mesh, unitId(c)).status()));
  });

  app.post("/v1/meshes/:mesh/units/:id/cancel", async (c) => {
    const mesh = meshName(c);
    can(c, "submit");
    return c.json(asResult(await unitObject(c.env, mesh, unitId(c)).cancel()));
  });

  app.delete("/v1/meshes/:mesh/units/:id", async (c) => {
    const mesh = meshName(c);
    can(c, "submit");
    return c.json(asResult(await unitObject(c.env, mesh, unitId(c)).release()));
  });
}

/** The submit itself: a unit created by the Mesh object, its payload streamed into the Unit object. */
async function submit(c: Ctx, mesh: string): Promise<Response> {
  // A chunked body cut short can arrive looking complete (wrangler dev forwards it so); only a
  // declared length, or framing with an end marker (shared/payload-framing.ts), lets the broker
  // tell, and a unit must never run on a truncated stdin as if it were whole.
  const framing = c.req.header(PAYLOAD_FRAMING_HEADER);
  if (framing !== undefined && framing !== PAYLOAD_FRAMING)
    throw new MeshError("bad_request", `the ${PAYLOAD_FRAMING_HEADER} header takes one value: ${PAYLOAD_FRAMING}`);
  const framed = framing === PAYLOAD_FRAMING;
  if (!framed && !/^\d{1,15}$/.test(c.req.header("content-length") ?? "")) {
    throw new MeshError(
      "length_required",
      "send the payload with a Content-Length header (meshctl does; with curl use --data-binary @FILE)",
    );
  }
  const worktype = c.req.query("worktype") ?? "";
  if (!NAME_PATTERN.test(worktype)) throw new MeshError("bad_request", "give the work type: ?worktype=NAME");
  const targetNode = c.req.query("node") || null;
  if (targetNode !== null && !NAME_PATTERN.test(targetNode)) throw new MeshError("bad_request", "invalid node id");
  const params: Record<string, string> = {};
  for (const [key, value] of new URL(c.req.url).searchParams) {
    if (key.startsWith("param.") && key.length > 6) params[key.slice(6)] = value;
  }
  const ttl = c.req.query("ttl");
  const ttlMs = ttl === undefined ? null : unwrap(parseDuration(ttl));
  const lostAfter = c.req.query("lostAfter");
  const lostAfterMs = lostAfter === undefined ? null : unwrap(parseDuration(lostAfter));
  const chosenId = c.req.query("id") ?? null;
  if (chosenId !== null && !UNIT_ID_PATTERN.test(chosenId))
    throw new MeshError("bad_unit_id", "unit ids are 8 characters of [0-9a-zA-Z]");
  const origin = c.req.query("origin") || null;
  if (origin !== null && !NAME_PATTERN.test(origin))
    throw new MeshError("bad_request", "origin names are 1-64 characters of [A-Za-z0-9._-]");
  const signature = c.req.header("mesh-signature") ?? null;
  if (signature !== null && (signature.length > MAX_SIGNATURE_CHARS || !/^[A-Za-z0-9_.-]+$/.test(signature))) {
    throw new MeshError(
      "bad_request",
      `the Mesh-Signature header must be at most ${MAX_SIGNATURE_CHARS} characters of base64url and dots`,
    );
  }
  const length = framed ? null : Number(c.req.header("content-length"));
  const created = asResult<{ unit: UnitIndexRow; created: boolean }>(
    await meshObject(c.env, mesh).createUnit({
      worktype,
      targetNode,
      idempotencyKey: c.req.header("idempotency-key") ?? null,
      unitId: chosenId,
      submitter: submitterOf(c.get("principal")),
      params,
      ttlMs,
      lostAfterMs,
      signature,
      origin,
      payloadLength: length,
      tags: unwrap(parseTagSelector(c.req.queries("tag") ?? [])),
      priority: unwrap(parsePriority(c.req.query("priority"))),
    }),
  );
  const unit = unitObject(c.env, mesh, created.unit.id);
  // A retry of a submit whose payload is in: answer here, leaving the body unread. Passed to the
  // Unit object and left unread there, the runtime would break the client's connection.
  if (!created.created && created.unit.ready) return c.json(asResult<UnitRecord>(await unit.status()), 200);
  // The body goes to the Unit object as a stream argument of an RPC call: it reads it chunk by
  // chunk into storage, so a payload is never held whole in memory on either side.
  const stored = asResult<{ record: UnitRecord; created: boolean }>(
    await unit.receivePayload(c.req.raw.body, { length, retry: !created.created }),
  );
  return c.json(stored.record, stored.created ? 201 : 200);
}

/** Framing adds 4 bytes a piece: room for a framed payload at the limit in pieces of 1 KiB. */
const DRAIN_SLACK = 1024 * 1024;

/** Reads and drops what is left of a body nobody read (one already handed on is left alone). */
async function drain(body: ReadableStream<Uint8Array> | null, limit: number): Promise<void> {
  if (!body || body.locked) return;
  let read = 0;
  try {
    for await (const chunk of body) {
      read += chunk.byteLength;
      if (read > limit) break;
    }
  } catch {
    // The client went away: nobody is left to answer.
  }
}
