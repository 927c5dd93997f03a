/**
 * A unit's data socket, kept open: dials, hands each new link to `onOpen` (which attaches), waits
 * for it to close, and dials again with backoff until the unit is over. The unit's process keeps
 * running meanwhile; each new link resumes from what the broker has.
 */
import type { Dispatcher } from "undici";
import { backoffDelay, sleep } from "../shared/backoff.js";
import { type Logger, errorMessage } from "../shared/node/log.js";
import { type Link, type LinkHandlers, openLink } from "./socket.js";

export interface UnitLinkOptions {
  unitId: string;
  dataUrl: string;
  /** Read at each connect: the agent swaps its join token for the node's credential once issued. */
  token: () => string;
  pingIntervalMs: number;
  dispatcher?: Dispatcher | undefined;
  handlers: LinkHandlers;
  onOpen: (link: Link) => void;
  /** Resolves when the unit is over: the current link is then given up. */
  over: Promise<void>;
  isOver: () => boolean;
  log: Logger;
}

export async function keepLinked(opts: UnitLinkOptions): Promise<void> {
  const unit = opts.unitId;
  for (let attempt = 0; !opts.isOver(); attempt++) {
    try {
      const link = await openLink(opts.dataUrl, opts.token(), opts.handlers, opts.pingIntervalMs, opts.dispatcher);
      attempt = 0;
      opts.onOpen(link);
      const code = await Promise.race([link.closed, opts.over.then(() => 1000)]);
      if (!opts.isOver()) opts.log.info("unit:link-lost", { unit, code });
    } catch (error) {
      opts.log.warn("unit:connect-failed", { unit, error: errorMessage(error) });
    }
    if (!opts.isOver()) await sleep(backoffDelay(attempt, { baseMs: 250, maxMs: 15_000 }));
  }
}
