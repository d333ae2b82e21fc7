/**
 * Where a request that only some backends take may go (hostile h47b N8: a
 * MessagePack request whose params pass the frame as JSON, admitted because
 * a backend speaks MessagePack, went to whichever backend the policy
 * picked, and a JSON one failed it FRAME_TOO_LARGE: 10 of 20 calls in a
 * pool of a JSON server and a MessagePack worker).
 */
import type { Backend } from "./backends.ts";

/** What such a request carries: which backends may take it (msgpack_job.ts). */
export interface Restricted {
  /** Whether `b` may take it; undefined: any backend may. */
  only?: (b: Backend) => boolean;
  /** Non-idempotent requests go to no untried backend (policies.ts `Guarded`). */
  readonly idempotent: boolean;
}

/**
 * The available backend of `list` that may take `job`, with the fewest
 * requests in flight for its capacity; undefined when none has room.
 */
export function fitting(list: readonly Backend[], job: Restricted): Backend | undefined {
  let best: Backend | undefined;
  let load = Infinity;
  for (const b of list) {
    if (!b.available || (!job.idempotent && b.untried) || !job.only!(b)) continue;
    const l = (b.inflight + b.penalty) / b.capacity;
    if (l < load) [best, load] = [b, l];
  }
  return best;
}

/** `picked` when `job` may go there, else {@link fitting}. */
export function fitFor(
  job: Restricted,
  picked: Backend,
  list: readonly Backend[],
): Backend | undefined {
  return job.only === undefined || job.only(picked) ? picked : fitting(list, job);
}
