/**
 * What each control-service command does, as calls to the broker's HTTP API. The bridge keeps no
 * unit state: every answer is read from the broker when the command arrives.
 */
import type { KeyObject } from "node:crypto";
import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import { hrtime } from "node:process";
import type { Readable, Writable } from "node:stream";
import { parseDuration } from "../../shared/duration.js";
import { newUnitId } from "../../shared/ids.js";
import type { UnitRecord } from "../../shared/unit.js";
import type { Logger } from "../../shared/node/log.js";
import { MeshApiError, type MeshClient } from "../client.js";
import { framedBody, spool } from "../payload.js";
import { signUnit } from "../sign.js";
import { admit } from "./admission.js";
import { type Command, errorLine, resultsHeaderLine, submitCreatedLine } from "./protocol.js";
import {
  type BridgeInfo,
  goJson,
  meshStatusReply,
  pingReply,
  reachableNodes,
  unitStatusRecord,
  workListReply,
} from "./records.js";

/** The part of the HTTP client the control service uses. */
export type Broker = Pick<MeshClient, "status" | "records" | "unit" | "cancel" | "release" | "submit" | "results">;

/** The connection, as a command sees it. */
export interface Session {
  /** Resolves once the text is handed to the socket (waits out backpressure). */
  write(text: string): Promise<void>;
  /** The bytes after the command line until the client half-closes; errors if the connection breaks first. */
  payload(): Readable;
  /** The socket, for raw results. */
  out: Writable;
  /** Aborted when the client is gone. */
  signal: AbortSignal;
}

export interface CommandContext {
  broker: Broker;
  mesh: string;
  bridge: () => BridgeInfo;
  /** For `signwork`: receptor's work-signing key, here an Ed25519 key (meshctl keygen). */
  signingKey: KeyObject | null;
  /** The broker link is HTTPS or loopback: secret_* params may be sent over it. */
  secureLink: boolean;
  /** How long a signed unit without a ttl may wait to start (SIGNED_WAIT_MS unless a test shortens it). */
  signedWaitMs?: number;
  log: Logger;
}

/**
 * How long a signed unit submitted without a ttl may wait for its node: the signature's lifetime
 * and the unit's ttl both. Long, because the unit may queue behind busy nodes for any time AWX
 * lets it; the agent's replay record (which keeps each accepted unit id until its signature
 * expires) is what keeps such a signature from running anything twice. Equal to the broker's
 * retention of finished units.
 */
export const SIGNED_WAIT_MS = 7 * 24 * 3600_000;

/** "next": read the next command; "close": the reply ends the connection. */
export type After = "next" | "close";

const json = (value: unknown) => `${goJson(value)}\n`;

export async function runCommand(command: Command, session: Session, ctx: CommandContext): Promise<After> {
  try {
    return await dispatch(command, session, ctx);
  } catch (error) {
    await session.write(errorLine(describe(error, "unitId" in command ? command.unitId : null)));
    // After a refused submit the client may already be sending its payload: never read that as commands.
    return command.kind === "work-submit" ? "close" : "next";
  }
}

async function dispatch(command: Command, session: Session, ctx: CommandContext): Promise<After> {
  const { broker } = ctx;
  const self = ctx.bridge().nodeId;
  switch (command.kind) {
    case "status":
      await session.write(json(meshStatusReply(await broker.status(), ctx.bridge(), command.requestedFields)));
      return "next";
    case "ping":
      await session.write(json(pingReply(await ping(broker, self, command.target))));
      return "next";
    case "reload":
      // The bridge reads no receptor.conf, so there is nothing to reload; AWX on Kubernetes calls
      // it after rewriting its config and treats anything but success as a failure.
      await session.write(json({ Success: true }));
      return "next";
    case "work-submit":
      return submit(command, session, ctx);
    case "work-list": {
      // receptor lists the units of its own node: here, the units submitted through this bridge.
      const units = command.unitId === null ? await broker.records(self) : [await known(broker, command.unitId)];
      await session.write(json(workListReply(units)));
      return "next";
    }
    case "work-status":
      await session.write(json(unitStatusRecord(await known(broker, command.unitId))));
      return "next";
    case "work-results": {
      const unit = await known(broker, command.unitId);
      await session.write(resultsHeaderLine(unit.id));
      try {
        await broker.results(unit.id, session.out, { offset: command.startpos, follow: true, signal: session.signal });
      } catch (error) {
        // The header is out, so an error line would read as results: close, as receptor does.
        if (session.signal.aborted)
          ctx.log.info("control:results-abandoned", { unit: unit.id, reason: "the client went away" });
        else ctx.log.warn("control:results-failed", { unit: unit.id, error: describe(error, unit.id) });
      }
      return "close";
    }
    case "work-cancel": {
      const unit = await broker.unit(command.unitId);
      // Another controller's unit: not this node's to cancel, as it is not this node's to release.
      if (unit.origin !== null && unit.origin !== self) {
        throw new Error(
          `unknown work unit ${unit.id} (submitted through control service ${unit.origin}; cancel it there)`,
        );
      }
      try {
        await broker.cancel(command.unitId);
      } catch (error) {
        // Release implies cancel, so a released unit is as canceled as it will get.
        if (!(error instanceof MeshApiError && error.code === "unit_released")) throw error;
      }
      await session.write(json({ cancelled: command.unitId }));
      return "next";
    }
    case "work-release":
    case "work-force-release": {
      const unit = await broker.unit(command.unitId);
      // Another controller's unit: not this node's to release (its reaper would release the other's).
      if (unit.origin !== null && unit.origin !== self) {
        throw new Error(
          `unknown work unit ${unit.id} (submitted through control service ${unit.origin}; release it there)`,
        );
      }
      // The broker holds the unit's data and never waits for the node, so force changes nothing;
      // releasing a released unit answers "released" again, so AWX's reaper and races never err.
      await broker.release(command.unitId);
      await session.write(json({ released: command.unitId }));
      return "next";
    }
  }
}

/** A unit that exists and is not released: receptor forgets a released unit, and AWX matches "unknown work unit". */
async function known(broker: Broker, unitId: string): Promise<UnitRecord> {
  const unit = await broker.unit(unitId);
  if (unit.state === "Released") throw new MeshApiError("unit_released", `unit ${unit.id} was released`, 410);
  return unit;
}

/**
 * receptor allocates the unit before its payload; here the unit id is chosen first (the broker
 * takes `?id=`). An unsigned unit's payload is streamed to the broker as it comes (framed,
 * shared/payload-framing.ts), so a work type that reads a self-delimiting stream (ansible-runner
 * worker) starts on its node while AWX's transmit still writes; a client that goes away
 * mid-payload leaves that unit Failed (`payload_incomplete`), never run as if its payload were
 * whole. A signed unit is created once the whole payload is in (the signature covers its digest):
 * a client that goes away mid-payload leaves no unit behind, and a later `work status` of that id
 * answers "unknown work unit", which receptor's own relay reads as "Remote work unit is gone".
 * The reply is always "Job Submitted": nothing runs on this node.
 */
async function submit(
  command: Extract<Command, { kind: "work-submit" }>,
  session: Session,
  ctx: CommandContext,
): Promise<After> {
  const self = ctx.bridge().nodeId;
  const ttl = command.ttl === null ? null : parseDuration(command.ttl);
  if (ttl && !ttl.ok) throw new MeshApiError(ttl.error.code, ttl.error.message, 400);
  const admission = admit(command, await ctx.broker.status(), {
    nodeId: self,
    secureLink: ctx.secureLink,
    hasSigningKey: ctx.signingKey !== null,
  });
  if (!admission.ok) throw new MeshApiError("bad_request", admission.error, 400);
  // A signed unit may wait as long as its ttl allows, and the signature lives exactly as long.
  const waitMs = ttl?.ok ? ttl.value : admission.sign ? (ctx.signedWaitMs ?? SIGNED_WAIT_MS) : null;
  const unitId = newUnitId();
  await session.write(submitCreatedLine(unitId));
  const unit = {
    worktype: command.worktype,
    node: admission.node,
    params: command.params,
    ttl: waitMs === null ? undefined : `${Math.ceil(waitMs / 1000)}s`,
    unitId,
    origin: self,
  };
  if (!admission.sign) return submitStreamed(unit, session, ctx);
  let spooled;
  try {
    spooled = await spool(session.payload());
  } catch (error) {
    ctx.log.warn("control:submit-abandoned", {
      unit: unitId,
      error: error instanceof Error ? error.message : String(error),
    });
    return "close";
  }
  try {
    const signature =
      admission.sign && ctx.signingKey && waitMs !== null
        ? await signUnit(ctx.signingKey, unitId, {
            mesh: ctx.mesh,
            worktype: command.worktype,
            node: admission.node,
            params: command.params,
            payloadPath: spooled.path,
            ttlMs: waitMs,
          })
        : undefined;
    const made = await ctx.broker.submit({
      ...unit,
      signature,
      payload: createReadStream(spooled.path),
      payloadSize: (await stat(spooled.path)).size,
    });
    await submitted(made, session, ctx);
  } finally {
    await spooled.remove();
  }
  return "close";
}

type UnitFields = Omit<Parameters<Broker["submit"]>[0], "payload">;

/** An unsigned unit: its payload goes to the broker as it arrives, framed. */
async function submitStreamed(unit: UnitFields, session: Session, ctx: CommandContext): Promise<After> {
  const input = session.payload();
  let inputFailed: unknown = null;
  input.once("error", (error) => {
    inputFailed = error;
  });
  let made: UnitRecord;
  try {
    made = await ctx.broker.submit({ ...unit, payload: framedBody(input), payloadFramed: true });
  } catch (error) {
    if (inputFailed === null) throw error;
    // The body ended without its end marker: the broker failed the unit, nothing ran on a prefix as if whole.
    ctx.log.warn("control:submit-abandoned", {
      unit: unit.unitId,
      error: inputFailed instanceof Error ? inputFailed.message : String(inputFailed),
    });
    return "close";
  }
  await submitted(made, session, ctx);
  return "close";
}

async function submitted(unit: UnitRecord, session: Session, ctx: CommandContext): Promise<void> {
  // Never the params: secret_* ones are for the node only.
  ctx.log.info("control:submitted", { unit: unit.id, worktype: unit.worktype, node: unit.targetNode });
  await session.write(json({ result: "Job Submitted", unitid: unit.id }));
}

async function ping(broker: Broker, self: string, target: string) {
  const start = hrtime.bigint();
  const status = await broker.status();
  // The broker answered for its nodes: that round trip is the reachability this bridge can measure.
  const ns = Number(hrtime.bigint() - start);
  if (target === self || reachableNodes(status).some((n) => n.nodeId === target))
    return { ok: true as const, from: target, ns };
  return { ok: false as const, error: `node ${target} is not connected to mesh ${status.mesh}` };
}

/** receptor's wording where clients match on it; otherwise the broker's message. */
function describe(error: unknown, unitId: string | null): string {
  if (error instanceof MeshApiError) {
    if (
      unitId !== null &&
      (error.code === "unknown_unit" || error.code === "bad_unit_id" || error.code === "unit_released")
    )
      return `unknown work unit ${unitId}`;
    return error.message;
  }
  return error instanceof Error ? error.message : String(error);
}
