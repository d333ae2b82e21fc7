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
