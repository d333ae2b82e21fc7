/**
 * Requests held by an instance (hostile39a P7, hostile40a T7): a registered
 * fake that answers its hello and the binder's `sys.ping` but sits on every
 * request (never answers, never hangs up) held a request's whole timeout,
 * and the next instance was never tried; a connection that had waited over
 * a second before its first request (the fake's heartbeat had come by then)
 * stayed on it for good, every request timing out.
 *
 * What counts is whether the instance answered a request of ours on the
 * connection: a response to one, in time or late (an error the other side
 * sent included). Bytes do not count: heartbeats, which a holder sends too,
 * and the other side's own requests and notifications are not answers.
 *
 * - A connection that has answered none is untried. A request sent on it
 *   gets {@link dialBudget} of its timeout (a sixteenth, within 100 ms and
 *   1 s: as a dial of an instance not known to work). If it is still
 *   unanswered then, and the connection still untried, it is closed; it
 *   counts as one that dropped before answering (service.ts `silent`), so
 *   its instance is passed over and reported, and idempotent requests are
 *   sent to the next within their time.
 * - A request marked non-idempotent is never cut short (it may be running on
 *   a slow server, and it must not run twice): it waits its whole timeout;
 *   if it times out on a connection still untried, the connection is closed
 *   then, so what comes next goes elsewhere. While one is in flight, the
 *   connection is not closed for any rule here.
 * - A connection that answered before but whose last {@link STUCK_AFTER}
 *   requests all timed out with no answer since, not even a late one, is
 *   closed the same way (Envoy's outlier detection: consecutive local-origin
 *   failures): an instance that answered a few and then holds everything
 *   does not keep a long-lived connection.
 * - A connection the search fell back to (every other instance failed) is
 *   not watched for its share: a server slow to answer its first request
 *   gets all of it; the {@link STUCK_AFTER} rule still holds there.
 */
import { CloseReason, DistError, type Peer } from "../../wire/mod.ts";
import { dialBudget } from "./memory.ts";

/** Requests timed out in a row, none answered since, after which a connection that answered before is closed. */
export const STUCK_AFTER = 5;

/** Why a connection was closed: it held a request, or the last {@link STUCK_AFTER}. */
export interface Cut {
  /** How long it held the request that closed it (ms). */
  ms: number;
  /** Requests timed out in a row on it (0 when closed at its share, before a timeout). */
  timeouts: number;
  /** Whether it had answered a request before. */
  answered: boolean;
}

/** Watches a service connection's requests for an instance that holds them. */
export class HoldWatch {
  /** Connections that answered a request of ours. */
  readonly #answered = new WeakSet<Peer>();
  /** Connections a request was sent on. */
  readonly #asked = new WeakSet<Peer>();
  /** Requests timed out in a row per connection, none answered since. */
  readonly #timeouts = new WeakMap<Peer, number>();
  /** Non-idempotent requests in flight per connection: while any is, it is not cut. */
  readonly #unsafe = new WeakMap<Peer, number>();
  /** Connections closed for holding requests. */
  readonly #cut = new WeakMap<Peer, Cut>();
  /** Connections not given a share (the search's last resort). */
  readonly #exempt = new WeakSet<Peer>();

  /** `peer`'s requests get no share (the {@link STUCK_AFTER} rule still holds). */
  exempt(peer: Peer): void {
    this.#exempt.add(peer);
  }

  /** `peer` answered a request of ours (in time or late). */
  answered(peer: Peer): void {
    this.#answered.add(peer);
    this.#timeouts.delete(peer);
  }

  /** Whether `peer` answered a request of ours. */
  hasAnswered(peer: Peer): boolean {
    return this.#answered.has(peer);
  }

  /** Whether a request was sent on `peer`. */
  wasAsked(peer: Peer): boolean {
    return this.#asked.has(peer);
  }

  /** Why `peer` was closed for holding requests, if it was. */
  cutFor(peer: Peer): Cut | undefined {
    return this.#cut.get(peer);
  }

  /** How long `peer` held a request when it was closed for it, if it was. */
  heldFor(peer: Peer): number | undefined {
    return this.#cut.get(peer)?.ms;
  }

  /** A request `sent` on `peer` with `timeoutMs`: `peer` is closed if it holds it (see above). */
  watch(peer: Peer, sent: Promise<unknown>, timeoutMs: number, idempotent: boolean): void {
    if (peer.isClosed) return;
    this.#asked.add(peer);
    const t0 = performance.now();
    let timer: ReturnType<typeof setTimeout> | undefined;
    if (idempotent && !this.#answered.has(peer) && !this.#exempt.has(peer)) {
      const ms = dialBudget(timeoutMs);
      timer = setTimeout(() => this.#cutIfUntried(peer, ms, 0), ms);
    }
    if (!idempotent) this.#unsafe.set(peer, (this.#unsafe.get(peer) ?? 0) + 1);
    const settled = (err?: unknown) => {
      clearTimeout(timer);
      if (!idempotent) this.#unsafe.set(peer, this.#unsafe.get(peer)! - 1);
      if (isAnswer(err, peer)) return this.answered(peer);
      if (!(err instanceof DistError) || err.code !== "TIMEOUT") return; // lost, or aborted
      const timeouts = (this.#timeouts.get(peer) ?? 0) + 1;
      this.#timeouts.set(peer, timeouts);
      const ms = performance.now() - t0;
      if (timeouts >= STUCK_AFTER) this.#cutIfHeld(peer, { ms, timeouts, answered: true });
      else if (!this.#exempt.has(peer)) this.#cutIfUntried(peer, ms, timeouts);
    };
    sent.then(() => settled(), settled);
  }

  #cutIfUntried(peer: Peer, ms: number, timeouts: number): void {
    if (!this.#answered.has(peer)) this.#cutIfHeld(peer, { ms, timeouts, answered: false });
  }

  #cutIfHeld(peer: Peer, cut: Cut): void {
    if (peer.isClosed || (this.#unsafe.get(peer) ?? 0) > 0) return;
    cut.answered = this.#answered.has(peer);
    this.#cut.set(peer, cut);
    peer.close(CloseReason.Local);
  }
}

/**
 * Whether a request on `peer` that settled with `err` (none: a result) was
 * answered by the other side: a result, or an error it sent. A TIMEOUT or a
 * lost connection is not, nor an error the other side reported about no
 * request in particular just before it hung up (the calls in flight then fail
 * with it: wire/calls.ts `failAll`).
 */
function isAnswer(err: unknown, peer: Peer): boolean {
  if (err === undefined) return true;
  if (!(err instanceof DistError) || err.code === "TIMEOUT" || err.code === "UNAVAILABLE") {
    return false;
  }
  return peer.canCall;
}
