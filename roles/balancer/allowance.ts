/**
 * Bulk flows yield to the others (issue 16; the shares, shares.ts, say who
 * is a bulk flow: a connection holding more than BULK_DEPTH shares).
 *
 * A share still let four pipelining clients hold 64 requests on the
 * backends beside a legitimate client's 8: its requests waited behind them,
 * and the attackers' requests took the CPU of the balancer and the servers
 * (a 2-core machine here), so it got a fifth of its throughput. So while a
 * connection that is not a bulk flow is busy (a request on the backends, or
 * one answered within {@link LIGHT_GRACE_MS}), bulk flows together get one
 * request to a backend for every {@link LIGHT_PER_BULK} of the others', at
 * most one at once for every LIGHT_PER_BULK of theirs there (at least one).
 * When none is busy, bulk flows share the backends, each within its share.
 * This is fq_codel's priority of sparse flows over bulk ones, by connection.
 * A client slow to read for a moment holds a few shares at most; one that
 * pipelines without reading holds the wire's limit (256).
 *
 * That allowance is for bulk flows whose clients read their answers: one
 * that leaves them unread (its socket holds more than UNREAD_BYTES
 * its peer has not acknowledged, and the peer acknowledged nothing for a
 * while: the kernel's word, wire's `stalledLoad`) gets none while others
 * are busy. Four pipelining clients that never read took an eighth of the
 * others' requests, and each of theirs cost the others its writes and
 * wake-ups on a 2-core machine; with no allowance at all the others went
 * faster, but a deep pipeliner that reads its answers then waited for them
 * to pause. When none is busy, every bulk flow goes as before.
 */
import { Admit, LIGHT_GRACE_MS, LIGHT_PER_BULK, MAX_CREDIT } from "./share_limits.ts";
import { type ClientShare, Held, STUCK_MS } from "./slots.ts";

/** Waiting connections `readerWaits` looks through at most. */
const READERS_LOOKED = 32;

export class Allowance {
  /** Requests on the backends sent for bulk flows. */
  bulk = 0;
  /** Bulk requests earned by others sent (1/LIGHT_PER_BULK each, up to MAX_CREDIT). */
  #credit = 0;
  /** When a request of a connection that is not a bulk flow was last answered. */
  #lightAt = -Infinity;
  /** Requests on the backends sent as light (not a bulk flow's). */
  #light = new Held(STUCK_MS);
  #now: () => number;
  /** Pumps the queue in `ms` (the shares' one timer). */
  #wakeIn: (ms: number) => void;
  /** Whether a connection's client leaves its answers unread (see the module note). */
  #unreadOf: ((key: object) => boolean) | undefined;
  /** Connections with requests waiting in the queue (kept with #unreadOf only). */
  #waiters = new Set<ClientShare>();
  /** Whether one of them reads its answers, as found at #readerAt (see readerWaits). */
  #reader = true;
  #readerAt = NaN;

  constructor(options: {
    now: () => number;
    wakeIn: (ms: number) => void;
    unread?: (key: object) => boolean;
  }) {
    this.#now = options.now;
    this.#wakeIn = options.wakeIn;
    this.#unreadOf = options.unread;
  }

  /**
   * Whether a request of a bulk flow (`share`'s, or any) may go now, with
   * `inflight` requests of every flow on the backends (`wake`: a pump is
   * due when the grace ends; `shared`: the key of connection-less jobs).
   */
  due(inflight: number, wake: boolean, share?: ClientShare, shared?: object): Admit {
    // Light requests a backend sits on are not a busy light flow (slots.ts):
    // counted, they let no bulk request go until they timed out (X6).
    const light = inflight - this.bulk - this.#light.old(this.#now());
    if (light === 0) {
      const wait = this.#lightAt + LIGHT_GRACE_MS - this.#now();
      if (wait <= 0) return Admit.Bulk;
      // Nothing may come to pump the line when the grace ends.
      if (wake && this.bulk === 0) this.#wakeIn(wait);
    }
    if (this.#credit < 1 || this.bulk >= Math.max(1, (light / LIGHT_PER_BULK) | 0)) {
      return Admit.No;
    }
    return share !== undefined && share.key !== shared && this.#unreading(share)
      ? Admit.No
      : Admit.Bulk;
  }

  /** Whether `share`'s client leaves its answers unread (asked once per turn of the clock). */
  #unreading(share: ClientShare): boolean {
    const unread = this.#unreadOf;
    if (unread === undefined) return false;
    const now = this.#now();
    if (share.unreadAt !== now) {
      share.unreadAt = now;
      share.unread = unread(share.key);
    }
    return share.unread;
  }

  /**
   * Whether a connection whose client reads its answers has requests
   * waiting (`shared`: the key of connection-less jobs, which read theirs):
   * when none has, a light flow's request may go past the queue though the
   * allowance has room (Shares.mayTake). Looked at once per turn of the
   * clock and when a connection begins to wait, through READERS_LOOKED of
   * them at most (past that, taken for yes).
   */
  readerWaits(shared: object): boolean {
    if (this.#unreadOf === undefined) return true;
    const now = this.#now();
    if (this.#readerAt !== now) {
      this.#readerAt = now;
      let looked = 0;
      this.#reader = false;
      for (const share of this.#waiters) {
        if (++looked > READERS_LOOKED || share.key === shared || !this.#unreading(share)) {
          this.#reader = true;
          break;
        }
      }
    }
    return this.#reader;
  }

  /** A request went to a backend at `now` (`bulk`: as a bulk flow's). */
  took(bulk: boolean, now: number): void {
    if (bulk) {
      this.bulk++;
      this.#credit = this.#credit > 1 ? this.#credit - 1 : 0;
    } else {
      this.#light.took(now);
      if (this.#credit < MAX_CREDIT) this.#credit += 1 / LIGHT_PER_BULK;
    }
  }

  /**
   * `n` requests (one unless told) sent as `bulk` at `sentAt` ended at `at`;
   * `now` is when they were answered (-Infinity: never sent).
   */
  gave(bulk: boolean, sentAt: number, at: number, now: number, n = 1): void {
    if (bulk) this.bulk -= n;
    else {
      this.#light.gave(sentAt, at, n);
      if (now > this.#lightAt) this.#lightAt = now;
    }
  }

  /** `share`, which has `share.waiting` requests in the queue now, began (1) or stopped (-1) one. */
  queued(share: ClientShare, n: 1 | -1): void {
    if (this.#unreadOf === undefined) return;
    if (share.waiting === 0) this.#waiters.delete(share);
    else if (share.waiting === 1 && n === 1) {
      this.#waiters.add(share);
      this.#readerAt = NaN;
    }
  }
}
