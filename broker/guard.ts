/**
 * One wrapper for every entry point of a Durable Object (fetch, alarm, webSocketMessage / Close /
 * Error, RPC methods): a failure is logged once, as `<kind>:<entry>-failed` with the object's
 * name, and then rethrown, unless the entry point says what to answer instead (a socket message
 * answers the agent with an error frame: a throw there would only drop the frame).
 *
 * Alarms follow the same rule, on purpose: rethrowing makes the runtime retry the alarm with
 * exponential backoff (from 2 s, up to 6 retries; developers.cloudflare.com/durable-objects/api/alarms),
 * and every alarm here re-judges from stored state, so running it again is safe. A handler that
 * set its next alarm before failing is not retried: the alarm it set replaces the retry (measured
 * on workerd 1.20261117.1). After the last retry the runtime drops the alarm for good, so both
 * objects' alarms set their own next attempt before they rethrow: the Mesh object's lease check
 * re-arms in `finally`, a Unit object's due work (`runDue`, unit/lifecycle.ts) on failure.
 */
import { logError } from "./log.js";

export type Guarded = <T>(entry: string, fn: () => T | Promise<T>, answer?: (error: unknown) => T) => Promise<T>;

/** `kind`: "mesh", "unit"; `name`: the object's name, read when a failure is logged. */
export function guard(kind: string, name: () => string | undefined): Guarded {
  return async (entry, fn, answer) => {
    try {
      return await fn();
    } catch (error) {
      logError(`${kind}:${entry}-failed`, error, { object: name() });
      if (answer) return answer(error);
      throw error;
    }
  };
}
