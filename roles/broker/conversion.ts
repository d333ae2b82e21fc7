/**
 * What converting kept values for the other codec costs, metered: a
 * retained value kept as JSON text (or MessagePack bytes) and delivered to
 * a subscriber of the other codec is converted for each such delivery, and
 * nothing of the conversion is kept beside the value (hostile review Z3: a
 * decoded form cached on the value made 1 MB of `[{},{},…]` into some
 * 20 MB of live objects for as long as it was retained, uncounted). The
 * meter lets a retained snapshot spread that work over turns of the event
 * loop (see RetainedSnapshot).
 *
 * A turn here is a task of the event loop, not a call: a sink that drains
 * at once (a write to loopback completes eagerly) resumes its subscription
 * from a promise callback, so pump after pump may run with no I/O polled in
 * between. The turn's count is reset by a timer, which fires only once the
 * loop has gone round.
 */

/** Bytes of kept values converted so far (their encoded size), ever increasing. */
export const conversions = { bytes: 0 };

/** Conversions and bytes counted in the current turn (from where they stood when it began). */
let turnFrom = -1;
let deliveredInTurn = 0;
const endTurn = (): void => {
  turnFrom = -1;
  deliveredInTurn = 0;
};

function beginTurn(): void {
  if (turnFrom >= 0) return;
  turnFrom = conversions.bytes;
  deliveredInTurn = 0;
  setTimeout(endTurn, 0);
}

/** Bytes of kept values converted in this turn of the event loop. */
export function convertedInTurn(): number {
  beginTurn();
  return conversions.bytes - turnFrom;
}

/** Bytes of retained values delivered by snapshots in this turn: `bytes` more, and the total. */
export function deliveredThisTurn(bytes: number): number {
  beginTurn();
  return deliveredInTurn += bytes;
}
