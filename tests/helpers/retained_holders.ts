/**
 * Topics as a RetainedStore sees them, for the tests of its per-user pools:
 * a named holder, and the bytes one value of {@link SIZE} counts.
 */
import { ENTRY_OVERHEAD, type RetainedHolder } from "../../roles/broker/retained.ts";

export interface Holder extends RetainedHolder<Holder> {
  name: string;
}

/** A topic named `name` holding no retained value yet. */
export function holder(name: string): Holder {
  return {
    name,
    retained: undefined,
    retainedBytes: 0,
    retainedAt: 0,
    retainedOlder: undefined,
    retainedNewer: undefined,
  };
}

/** The size given to each value the tests keep, and what the store counts for it. */
export const SIZE = 100;
export const COST = SIZE + ENTRY_OVERHEAD;
