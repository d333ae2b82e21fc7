/**
 * Requests held by an instance not known to work (hostile39a P7): a
 * registered fake that answers its hello and the binder's `sys.ping` but
 * sits on every request (never answers, never hangs up) held a one-shot
 * request's whole timeout, and the next instance was never tried.
 *
 * A connection is untried when it had got nothing since its hello when its
 * first request was sent, and until one is answered (heartbeats, which a
 * holder sends too, do not count). A request sent on an untried one gets
 * {@link dialBudget} of its timeout (a sixteenth, within 100 ms and 1 s: as
 * a dial of an instance not known to work). If it is still unanswered then
 * and the connection still untried, it is closed: it counts as one
 * that dropped before answering (service.ts `silent`), so its instance is
 * passed over and reported, and idempotent requests are sent to the next
 * within their time. A non-idempotent request is never cut short (it may be
 * running on a slow server, and it must not run twice): it waits its whole
 * timeout; if it times out and the connection is still silent, the
 * connection is closed then, so what comes next goes elsewhere. A
 * connection the search fell back to (every other instance failed) is not
 * watched: a server slow to answer its first request gets it all.
 */
import { CloseReason, DistError, type Peer } from "../../wire/mod.ts";
import { dialBudget } from "./memory.ts";

/** Watches a service connection's requests for an instance that holds them. */
export class HoldWatch {
  readonly #silent: (peer: Peer) => boolean;
  /** Non-idempotent requests in flight per connection: while any is, it is not cut. */
  readonly #unsafe = new WeakMap<Peer, number>();
  /** Connections closed for holding a request, with how long they held it (ms). */
  readonly #cut = new WeakMap<Peer, number>();
  /** Connections not watched (the search's last resort). */
  readonly #exempt = new WeakSet<Peer>();
  /** Whether each connection watched is untried (true) or answered a request (false). */
  readonly #untried = new WeakMap<Peer, boolean>();

  /** @param silent whether a connection got nothing since its hello */
  constructor(silent: (peer: Peer) => boolean) {
    this.#silent = silent;
  }

  /** `peer`'s requests are not watched. */
  exempt(peer: Peer): void {
    this.#exempt.add(peer);
  }

  /** How long `peer` held a request when it was closed for it, if it was. */
  heldFor(peer: Peer): number | undefined {
    return this.#cut.get(peer);
  }

  /** A request `sent` on `peer` with `timeoutMs`: `peer` is closed if it holds it (see above). */
  watch(peer: Peer, sent: Promise<unknown>, timeoutMs: number, idempotent: boolean): void {
    if (this.#exempt.has(peer) || peer.isClosed) return;
    if (!this.#untried.has(peer)) this.#untried.set(peer, this.#silent(peer));
    if (!this.#untried.get(peer)) return;
    const answered = (err?: unknown) => {
      const lost = err instanceof DistError &&
        (err.code === "TIMEOUT" || err.code === "UNAVAILABLE");
      if (!lost) this.#untried.set(peer, false);
    };
    sent.then(() => answered(), answered);
    if (!idempotent) {
      const t0 = performance.now();
      this.#unsafe.set(peer, (this.#unsafe.get(peer) ?? 0) + 1);
      const done = (err?: unknown) => {
        this.#unsafe.set(peer, this.#unsafe.get(peer)! - 1);
        if (err instanceof DistError && err.code === "TIMEOUT") {
          this.#cutIfHeld(peer, performance.now() - t0);
        }
      };
      sent.then(() => done(), done);
      return;
    }
    const ms = dialBudget(timeoutMs);
    const timer = setTimeout(() => this.#cutIfHeld(peer, ms), ms);
    const stop = () => clearTimeout(timer);
    sent.then(stop, stop);
  }

  #cutIfHeld(peer: Peer, ms: number): void {
    if (peer.isClosed || !this.#untried.get(peer) || (this.#unsafe.get(peer) ?? 0) > 0) return;
    this.#cut.set(peer, ms);
    peer.close(CloseReason.Local);
  }
}
