/**
 * What the dispatcher (forward.ts) takes and tells: a job, the hooks of
 * the socket side, its options and its counters.
 */
import type { DistError } from "../../wire/mod.ts";
import { sharedError as refusal } from "../../wire/shared_error.ts";
import type { Backend, Transition } from "./backends.ts";
import type { FairItem } from "./queue.ts";
import type { RetryBudget } from "./retry_budget.ts";
import type { ClientShare } from "./shares.ts";
import type { Trial } from "./trials.ts";
import type { Restricted } from "./fitting.ts";

/** One client request on its way through the balancer. */
export interface Job extends FairItem, Restricted {
  /** False when the client marked it non-idempotent: it is never sent twice. */
  readonly idempotent: boolean;
  /** Times it has been sent to a backend. */
  attempts: number;
  /** While queued: when it stops waiting (performance.now() ms). */
  deadline: number;
  /** The backend it is on (or was last sent to). */
  backend?: Backend;
  /** When it was last sent (performance.now() ms). */
  sentAt: number;
  /** When the balancer took it (performance.now() ms), for `latency`. */
  takenAt: number;
  /** While queued: the bytes it counts against the queue's byte budget. */
  queuedBytes: number;
  /** Its client connection's share of the backends (set by the dispatcher). */
  share?: ClientShare;
  /** Whether it was sent as a bulk flow's request (shares.ts; set by the dispatcher). */
  bulk?: boolean;
  /** About its size in bytes, for the shares (set by the dispatcher). */
  bytes?: number;
  /** Sent as a trial to an untried backend (trials.ts; set by the relay). */
  trial?: Trial;
}

export interface DispatchHooks<J extends Job> {
  /**
   * Sends `job` to `backend`; the owner later calls `finish` exactly once.
   * @returns false when nothing was sent (the link is down): the backend
   * must then be out of rotation, and the job goes elsewhere.
   */
  send(job: J, backend: Backend): boolean;
  /** Answers the client with `err`; the job is over. */
  reject(job: J, err: DistError): void;
  /**
   * About how many bytes `job` keeps while it waits, or any number above
   * `limit` when it is above (so a large job need not be measured in full).
   */
  sizeOf(job: J, limit: number): number;
  /**
   * Whether nobody waits for `job` any more (its client's connection
   * closed): a waiting job that is abandoned is dropped at its turn instead
   * of being sent.
   */
  abandoned?(job: J): boolean;
  /**
   * Whether `job`'s client takes no more answers for now (it has not read
   * what it is owed): the job is not sent but waits its turn in the queue,
   * and the owner calls `pump()` once the client has read enough.
   */
  held?(job: J): boolean;
  /** Told when an outcome takes a backend out (a server failure: Backend.onAnswered). */
  report?(t: Transition): void;
}

export interface DispatchOptions {
  /** Most requests waiting for a backend; beyond it OVERLOADED at once. */
  queueLimit: number;
  /** Most bytes of requests waiting for a backend; beyond it OVERLOADED at once. */
  queueBytes: number;
  /** How long a request waits for a backend before it fails. */
  queueTimeoutMs: number;
  /** Most extra sends of one request after its backend died. */
  retries: number;
  budget: RetryBudget;
  /** Requests one client connection may have on backends while others are active (shares.ts). */
  contendedShare?: number;
  /**
   * The source of a client connection (its peer address, or its user): the
   * connections of one source share its shares while another source is busy
   * (shares.ts). Undefined: each connection is its own source.
   */
  sourceOf?: (flow: object) => string | undefined;
  /**
   * Whether the client of a connection leaves its answers unread: its bulk
   * flow gets no allowance while others are busy (shares.ts). Undefined: none does.
   */
  unread?: (flow: object) => boolean;
  now?: () => number;
}

/** Counters of the dispatcher, for `sys.stats`. */
export interface DispatchStats {
  /** Requests submitted. */
  requests: number;
  /** Extra sends after a backend died. */
  retries: number;
  /** Failures sent once more to another backend, to see whether it answers them (verify.ts). */
  replays: number;
  /** Refused at once because the queue was full, in requests or bytes (OVERLOADED). */
  overloaded: number;
  /** Failed after waiting the queue timeout. */
  expired: number;
  /** Lost with a backend and not retried (non-idempotent, retries or budget spent). */
  lost: number;
  /** Dropped while waiting: their client's connection closed first. */
  abandoned: number;
}

/** Counters at zero. */
export function newDispatchStats(): DispatchStats {
  return { requests: 0, retries: 0, replays: 0, overloaded: 0, expired: 0, lost: 0, abandoned: 0 };
}

/** What a request that waited `ms` (the queue timeout) for a backend fails with. */
export function waitedTooLong(healthy: number, ms: number): DistError {
  return healthy === 0
    ? refusal("UNAVAILABLE", `No healthy backend within ${ms} ms`)
    : refusal("OVERLOADED", `Every backend was busy for ${ms} ms`);
}
