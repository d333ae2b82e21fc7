/**
 * Work done once per turn of the event loop (the frames one poll delivered)
 * rather than once per message: a clock read, a check. Shared by the roles
 * whose hot paths read the time or check a budget per message.
 */

/**
 * A clock that reads `read` (default Date.now) once per turn: every reading
 * within a turn is the time its first reading took, forgotten at the turn's
 * end (a microtask). Deno reads the clock with an op (op_now): the
 * balancer's dispatcher read it two or three times a forwarded request, about
 * 5 % of its CPU under load (`perf`), and the broker once a publish. A
 * deadline, latency or idle time is then off by at most that turn's length.
 */
export function turnClock(read: () => number = Date.now): () => number {
  let time = NaN;
  const forget = () => void (time = NaN);
  return () => {
    if (time !== time) {
      time = read();
      queueMicrotask(forget);
    }
    return time;
  };
}

/**
 * The monotonic clock (performance.now(), ms) read once per turn, one for
 * the whole process: each clock of its own is an op and a microtask a turn
 * more (the balancer's dispatcher, trials and trial backoff had three).
 */
export const turnMs: () => number = turnClock(() => performance.now());

/**
 * Returns a function that runs `check` once at the end of the current turn
 * (a microtask), however often it is called in that turn: a read's publishes
 * share one check, and a publish costs a flag test.
 */
export function oncePerTurn(check: () => void): () => void {
  let queued = false;
  const run = () => {
    queued = false;
    check();
  };
  return () => {
    if (!queued) {
      queued = true;
      queueMicrotask(run);
    }
  };
}
