/**
 * What the owner of a {@link Peer} gives it and learns from it: who is at
 * the other end, the handlers of the peer's requests and notifications,
 * and the options (limits, timing, fast paths) a Peer runs with.
 */
import type { Codec } from "./codec.ts";
import type { AdmissionLimits } from "./admission.ts";
import type { AnswerLimits } from "./answers.ts";
import type { FastHooks } from "./fast_path.ts";
import type { Identity } from "./credentials.ts";
import type { Peer } from "./peer.ts";

/** Who is at the other end, as told in the handshake. */
export interface PeerInfo {
  /** The other side's role (`server`, `client`, …). */
  role: string;
  /** The other side's name (in logs and `by`). */
  name: string;
  /** The user its credentials proved, on a listener that authenticates. */
  user?: string;
  /** The largest frame payload it accepts, as it told in the handshake (`max_frame`). */
  maxFrame?: number;
}

/** What a request says about itself besides method and params. */
export interface RequestMeta {
  /**
   * False when the sender marked the request non-idempotent (`"idem": false`
   * on the request): it must never run twice, so nothing may replay it.
   */
  readonly idempotent: boolean;
}

/**
 * Answers one request. Return the result (or a Promise of it), or throw a
 * DistError; anything else thrown becomes INTERNAL.
 */
export type RequestHandler = (
  method: string,
  params: unknown,
  peer: Peer,
  meta: RequestMeta,
) => unknown;
/**
 * Counts the requests a Peer answers, where it answers them (metrics, when
 * asked for): the Peer asks `of(method)` when a request's method differs
 * from its last one's, and tells the tally each request's outcome. Not
 * told of the fast paths' requests.
 */
export interface RequestCounter {
  /** The tally of `method` (of its class). */
  of(method: string): RequestTally;
}

/** One method class's counts (see {@link RequestCounter}). */
export interface RequestTally {
  /** A request is taken: its start time if this one is timed, else -1. */
  start(): number;
  /** It was answered with a result; `t0` is what start() gave. */
  done(t0: number): void;
  /** It was answered with `err`. */
  failed(err: unknown, t0: number): void;
}

/** Takes one notification (no answer is sent; what it throws is logged). */
export type NotificationHandler = (method: string, params: unknown, peer: Peer) => void;

/** How a Peer behaves: its handlers, fast paths, limits and timing. */
export interface PeerOptions extends FastHooks, AdmissionLimits, AnswerLimits {
  /** The codec agreed in the handshake. */
  codec: Codec;
  /** Who is at the other end (from the handshake). */
  remote?: PeerInfo;
  /** Who the listener's authenticator found the dialer to be, and what it may do. */
  identity?: Identity;
  /** Name put in `by` of every response this side sends. */
  by?: string;
  /** Silence after which a `ping` notification is sent (ms); 0 disables heartbeats. */
  heartbeatMs?: number;
  /** Heartbeat periods of silence after which the peer is dead. */
  liveness?: number;
  /** Timeout of a call that names none (ms). */
  timeoutMs?: number;
  /** Answers the peer's requests; by default every method is UNKNOWN_METHOD. */
  onRequest?: RequestHandler;
  /** Takes the peer's notifications; by default they are ignored. */
  onNotification?: NotificationHandler;
  /** Counts the requests answered (see {@link RequestCounter}); none by default. */
  counter?: RequestCounter;
  /** A set this peer belongs to while open (a listener's); it leaves it on close. */
  tracker?: Set<Peer>;
}
