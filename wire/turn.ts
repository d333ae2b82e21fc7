/**
 * A clock that reads Date.now() once per turn of the event loop: a read's
 * publishes share one instant, and a publish costs no clock read of its own.
 */
export function turnClock(): () => number {
  let time = 0;
  const forget = () => void (time = 0);
  return () => {
    if (time === 0) {
      time = Date.now();
      queueMicrotask(forget);
    }
    return time;
  };
}

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
