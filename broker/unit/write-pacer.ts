/**
 * Paces the Unit objects' results writes so that they leave the broker's thread idle for half as
 * long as they keep it busy (at most MAX_PAUSE_MS a write).
 *
 * Why: workerd runs the Worker and every Durable Object of an isolate on one thread whose event
 * loop (KJ) polls for I/O only when it has nothing else queued (KJ's WaitScope busyPollInterval,
 * which workerd leaves at "never": capnproto c++/src/kj/async.h). An agent streaming results at
 * full speed always has its next frame in the socket, and each write blocks the thread on SQLite's
 * commit, so the queue never empties: nothing that waits for the loop to poll moves until the agent
 * stops. That is every other socket and request, including a results follower, whose stream
 * advances one 64 KiB piece per poll (seen with strace: one `epoll_wait` between two `writev`s of
 * a follower, none at all for the seconds a full-speed stream lasts). Followers stalled after their
 * first 6–14 MiB until the unit had ended. A write that waits for its turn through a timer gives
 * the loop that idle time: a timer fires only once the loop has polled, and while it waits the
 * followers move at their own speed. Frames that come meanwhile join the write (results-batch.ts).
 *
 * Half: a follower reads at 100–200 MiB/s where writes store 30–80, so it needs less idle time than
 * the write took to keep up; and the larger batches that form during the pause save syncs. A full
 * stream with two followers, alternated on a loaded machine: a pause as long as the write stored
 * 24–26 MiB/s and the followers had 103–203 MiB of 203 when it ended; half as long, 35–36 MiB/s and
 * 71–173 MiB; no pause (before), 29–30 MiB/s and 36–86 MiB, silent for 1.2 s at a time.
 *
 * The pacer is one for the isolate, so Unit objects streaming at once take turns with everything
 * else rather than each leaving idle time the others fill. Pure state: each object waits in its own
 * context, with its own timer.
 */

/** The pause after a write, as a share of the time it took. */
export const PAUSE_SHARE = 0.5;

/** The longest pause after one write: a slow disk sync does not stop the stream for as long. */
export const MAX_PAUSE_MS = 100;

export class WritePacer {
  private readyAt = 0;

  /** How long a results write must wait at `now` (ms). */
  wait(now: number): number {
    return Math.max(0, this.readyAt - now);
  }

  /** A write ran from `start` to `end` (ms): no other starts until PAUSE_SHARE of that after its end. */
  wrote(start: number, end: number): void {
    const pause = Math.min(Math.max(end - start, 0) * PAUSE_SHARE, MAX_PAUSE_MS);
    this.readyAt = Math.max(this.readyAt, end + pause);
  }
}

/** The isolate's one pacer: module state, shared by the Unit objects on its thread. */
export const resultsPacer = new WritePacer();

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * Resolves when a results write may start: always through a timer (so after the loop has polled,
 * even when no pause is due), and again while another object's write has moved the turn later.
 */
export async function turnToWrite(pacer: WritePacer = resultsPacer): Promise<void> {
  do await sleep(pacer.wait(Date.now()));
  while (pacer.wait(Date.now()) > 0);
}
