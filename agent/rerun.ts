/**
 * A task that must not run twice at once, and must not miss a call either: a call while it runs
 * makes it run once more when it is done (however many such calls came), rather than being
 * dropped. For the results pump (runner.ts): a file change or an ack that comes while a pump is
 * reading is what says there is more to send; dropped, those bytes would wait for the next poll.
 */
export function rerunning(task: () => Promise<void>, stop: () => boolean = () => false): () => Promise<void> {
  let running = false;
  let again = false;
  return async () => {
    if (running) {
      again = true;
      return;
    }
    running = true;
    try {
      do {
        again = false;
        await task();
      } while (again && !stop());
    } finally {
      running = false;
    }
  };
}
