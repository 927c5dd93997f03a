/**
 * What arrives on a unit's data socket, decoded and handed to the runner one call per message:
 * the runner declares what it does, this module how the wire says it. Anything malformed is logged
 * and dropped; the broker's refusals of the unit and its other faults are told apart here.
 */
import type { Logger } from "../shared/node/log.js";
import { decodeFrame } from "../shared/frames.js";
import { type BrokerDataMessage, decodeBrokerData } from "../shared/protocol.js";
import type { UnitState } from "../shared/states.js";
import type { LinkHandlers } from "./socket.js";

export type Attached = Extract<BrokerDataMessage, { type: "attached" }>;

/** What a unit's runner does with each message. */
export interface UnitHandlers {
  attached(msg: Attached): void;
  resultsAck(offset: number): void;
  /** A streaming payload is whole at `size` bytes. */
  payloadEnd(size: number): void;
  cancel(): void;
  /** The unit is final at the broker. */
  unitClosed(state: UnitState, exitRecorded: boolean): void;
  /** The broker does not know the unit, or not as this node's: it is over here. */
  refused(message: string): void;
  /** Any other fault: drop the link and re-attach, which resynchronises both offsets. */
  fault(code: string): void;
  /** A payload frame; false when no download takes it. */
  payload(offset: number, data: Uint8Array): boolean;
  /** Frames are expected no longer (the unit failed while taking its payload in). */
  ignoresFrames(): boolean;
}

export function unitMessages(unit: string, h: UnitHandlers, log: Logger): LinkHandlers {
  return {
    onText(text) {
      const decoded = decodeBrokerData(text);
      if (!decoded.ok) return log.warn("unit:bad-message", { unit, ...decoded.error });
      const msg = decoded.value;
      switch (msg.type) {
        case "attached":
          return h.attached(msg);
        case "results-ack":
          return h.resultsAck(msg.offset);
        case "payload-end":
          return h.payloadEnd(msg.size);
        case "cancel":
          return h.cancel();
        case "closed":
          return h.unitClosed(msg.state, msg.exitRecorded);
        case "error":
          log.warn("unit:broker-error", { unit, ...msg.error });
          if (msg.error.code === "not_assigned" || msg.error.code === "unknown_unit")
            return h.refused(msg.error.message);
          return h.fault(msg.error.code);
      }
    },
    onBinary(bytes) {
      if (h.ignoresFrames()) return;
      const decoded = decodeFrame(bytes);
      if (!decoded.ok || decoded.value.kind !== "payload" || !h.payload(decoded.value.offset, decoded.value.data)) {
        log.warn("unit:bad-frame", { unit });
      }
    },
  };
}
