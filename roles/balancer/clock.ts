/**
 * The dispatcher's clock: performance.now() read once per turn of the
 * event loop, not at each request's send and answer. Deno reads the clock
 * with an op (op_now), and the dispatcher read it two or three times a
 * forwarded request (when it went, when it came back, whether a backend is
 * idle): about 5 % of the balancer's CPU under load (`perf`, the callers of
 * op_now and the vDSO clock). Within one turn every reading is the time the
 * turn's first reading was taken; the turn is short (the frames of the
 * reads one poll of the event loop delivered), so a deadline, a latency or
 * a backend's idle time is off by at most that turn's length.
 */

/** The last reading, while its turn lasts (NaN: none). */
let at = NaN;
/** Forgets the reading at the end of the turn (one function for the process). */
const forget = (): void => {
  at = NaN;
};

/** performance.now(), as first read in this turn. */
export function turnNow(): number {
  if (at !== at) {
    at = performance.now();
    queueMicrotask(forget);
  }
  return at;
}
