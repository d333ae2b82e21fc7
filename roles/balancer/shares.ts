/**
 * Per-connection shares of the backends' in-flight slots (issue 16).
 *
 * The fair queue (queue.ts) decides whose waiting request goes next, but a
 * request sent to a backend waits there behind every request already on
 * that connection: a client that pipelines without reading kept every slot
 * of every backend full (128 each), and a legitimate request, sent at its
 * turn, still waited behind a few hundred of the attacker's. So while more
 * than one client connection is active (a request taken within the last
 * {@link ACTIVE_MS}), each may have at most {@link CONTENDED_SHARE} requests
 * on the backends while requests wait; the rest wait in its line of the
 * fair queue. While none waits, a connection may have up to BULK_DEPTH
 * shares there (within that depth it is no bulk flow, below), so a read of
 * up to 64 requests goes on whole, in one write (a share split a client's reads
 * of 64 into writes of 16: twice the CPU per request). A client alone may use every slot.
 *
 * A connection that holds more than {@link BULK_DEPTH} shares (on the
 * backends and waiting) is a bulk flow, and bulk flows yield to the others
 * (allowance.ts: fq_codel's priority of sparse flows over bulk ones, by
 * connection; none for a client that leaves its answers unread).
 *
 * Shares by connection alone let a client spread over connections take a
 * share on each: sixteen connections of 64 requests each held 256 slots, and
 * none was a bulk flow. So the connections of one source (a peer address, or
 * an authenticated user) count together too, but only while another source
 * has requests in the balancer (or had one answered within the grace): many
 * clients behind one address (a NAT, every test on loopback) are one source,
 * and alone they are limited by connection only. Then a source's connections
 * together may have {@link SOURCE_OUT} shares on the backends, and those
 * holding more than {@link SOURCE_DEPTH} shares (on the backends and
 * waiting) are bulk flows: what one connection may hold, plus one share.
 *
 * Shares by request count let one client that kept 16 echo requests of
 * 64 KiB–1 MiB outstanding (reading every answer) cut every other client to
 * 0.01–0.04× its throughput, p99 0.2–2 s (hostile32 X2): every client's
 * requests to a backend go on one connection, so a small request waited
 * behind up to 16 large ones on the way out, and behind their answers on
 * the way back. So bytes count too. While others are active, a connection
 * may have at most {@link SHARE_BYTES} of requests on the backends (always
 * at least one request), and the connections of a source together
 * {@link SOURCE_BYTES} while another source is busy (hostile33 Y1: sixteen
 * connections of 64 KiB held 1 MiB). Requests of {@link PACED_BYTES} or
 * more are paced, and kept off one backend (pacing.ts).
 */

import {
  AnswerTime,
  ClientShare,
  type Held,
  mayHold,
  Sitting,
  SourceShare,
  STUCK_MS,
} from "./slots.ts";
import { AnswerRun } from "./answer_run.ts";
import { SourceBook } from "./source_book.ts";
import { Allowance } from "./allowance.ts";
import { Pacing } from "./pacing.ts";
import { Wake } from "./wake.ts";
import type { Ahead } from "./queue.ts";

import {
  ACTIVE_MS,
  Admit,
  BULK_DEPTH,
  CONTENDED_SHARE,
  PACED_BYTES,
  SHARE_BYTES,
  SOURCE_BYTES,
  SOURCE_DEPTH,
  SOURCE_OUT,
} from "./share_limits.ts";

export * from "./share_limits.ts";
export { ClientShare, SourceShare };

const SHARED_KEY = {};

export class Shares {
  readonly contended: number;
  /** Requests `admit` refused for the bulk flows' allowance alone (forward.ts reads it). */
  bulkRefused = 0;
  /**
   * What the last `admit` refused for, if that was the slots of its source
   * (the source) or its network's (the network: source_book.ts netRoom):
   * forward.ts parks the connection until their answers come back.
   */
  refusedFor: object | undefined;
  /** Requests on the backends, of every connection. */
  #inflight = 0;
  /** Requests of PACED_BYTES or more: how they go, and where (pacing.ts). */
  readonly #pacing: Pacing;
  /** Answers not counted yet (answer_run.ts). */
  #run = new AnswerRun();
  /** The backends' answers' time (slots.ts). */
  #answers = new AnswerTime();
  /** Slots of the backends in rotation (slots.ts). */
  #capacity: () => number;
  /** What bulk flows may send while others are busy (allowance.ts). */
  readonly #allowance: Allowance;
  /** The one timer that pumps the queue when nothing else may (wake.ts). */
  #wake: Wake;
  /** Requests sitting on the backends (slots.ts). */
  #sitting = new Sitting(this.#answers);
  #byKey = new Map<object, ClientShare>();
  /** The connections' sources, and which are busy (source_book.ts). */
  #sources: SourceBook;
  #sourceOf: ((key: object) => string | undefined) | undefined;
  /** The share `of` gave last (still in #byKey). */
  #last: ClientShare | undefined;
  #timer: ReturnType<typeof setInterval> | undefined;
  #now: () => number;
  #waiting: (key: object) => boolean;
  /** Told when a source got `n` answers back (its parked flows may go: forward.ts). */
  #freed: ((source: SourceShare, n: number) => void) | undefined;

  /**
   * @param waiting whether a connection has requests waiting (its share is
   * kept until they are sent)
   * @param wake called when bulk flows held back for the grace may go
   * @param sourceOf the source of a connection (undefined: its own)
   * @param unread whether a connection's client leaves its answers unread
   */
  constructor(
    options: {
      contended?: number;
      now: () => number;
      waiting: (key: object) => boolean;
      wake: () => void;
      sourceOf?: (key: object) => string | undefined;
      unread?: (key: object) => boolean;
      backends?: () => number;
      capacity?: () => number;
      freed?: (source: SourceShare, n: number) => void;
    },
  ) {
    this.#freed = options.freed;
    this.#pacing = new Pacing({
      now: options.now,
      backends: options.backends ?? (() => 1),
      inflight: () => this.#inflight,
      active: () => this.#byKey.size,
      wakeIn: (ms) => this.#wake.in(ms),
      answers: this.#answers,
    });
    this.#capacity = options.capacity ?? (() => Infinity);
    this.contended = options.contended ?? CONTENDED_SHARE;
    this.#now = options.now;
    this.#waiting = options.waiting;
    this.#wake = new Wake(options.now, options.wake);
    this.#sourceOf = options.sourceOf;
    this.#sources = new SourceBook(options.now);
    this.#allowance = new Allowance({
      now: options.now,
      wakeIn: (ms) => this.#wake.in(ms),
      unread: options.unread,
    });
  }

  /** Connections active now. */
  get active(): number {
    return this.#byKey.size;
  }

  /** Requests on the backends, of every connection. */
  get inflight(): number {
    if (this.#run.n > 0) this.#flush();
    return this.#inflight;
  }

  /** Requests of PACED_BYTES or more: how they go, and where (pacing.ts). */
  get pacing(): Pacing {
    if (this.#run.n > 0) this.#flush();
    return this.#pacing;
  }

  /** The share of the connection `key` (undefined: one shared by connection-less jobs). */
  of(key: object | undefined): ClientShare {
    const k = key ?? SHARED_KEY;
    // Requests come in runs from one connection (one read, many frames).
    if (this.#last?.key === k) return this.#last;
    let share = this.#byKey.get(k);
    if (share === undefined) {
      share = new ClientShare(k, key === undefined ? undefined : this.#sourceFor(key));
      this.#byKey.set(k, share);
      if (this.#timer === undefined) {
        this.#timer = setInterval(() => this.#sweep(), ACTIVE_MS);
        Deno.unrefTimer(this.#timer);
      }
    }
    return this.#last = share;
  }

  /**
   * Whether a request of `share`'s connection, with nothing of it waiting,
   * may go to a backend now (as a request within its share), with `ahead`
   * waiting in the queue (queue.ts). With requests of other connections
   * only, each waits because its connection may not send now (else the
   * queue's pump would have sent it): this one goes past them where it
   * would go at its turn, as a light flow's (not a bulk one's, whose
   * allowance is theirs too), and only while bulk flows may not send (at
   * their turn they would go first). Going past saves the queue's work (a line,
   * a copy of the request, the turns) for every request of a light client
   * beside pipelining ones: under four, about a sixth of the balancer's
   * busy time (`--cpu-prof`).
   */
  mayTake(share: ClientShare, bytes: number, ahead: Ahead = "none"): boolean {
    if (this.#run.n > 0) this.#flush();
    if (ahead !== "none") {
      return ahead === "others" && this.admit(share, 1, bytes) === Admit.Light && !this.bulkDue();
    }
    if (!this.#slotFor(share)) return false;
    if (this.#byKey.size <= 1) return true;
    // Nothing waits: a light flow's read goes whole (in one write), up to BULK_DEPTH shares.
    if (this.#full(share, BULK_DEPTH) || !this.#roomFor(share, bytes)) return false;
    const source = share.source;
    return source === undefined || source.connections <= 1 ||
      this.#sourceRoom(source, bytes) || !this.#sources.othersBusy(source);
  }

  /** Whether `source` may have a request of `bytes` more on the backends while others are busy. */
  #sourceRoom(source: SourceShare, bytes: number): boolean {
    return source.inflight < SOURCE_OUT * this.contended &&
      (source.inflight === 0 || source.bytes + bytes <= SOURCE_BYTES);
  }

  /**
   * Whether the head of `share`'s line may go to a backend now, and as what.
   * @param waiting requests of that connection waiting, the head included
   * @param bytes the head's size
   */
  admit(share: ClientShare, waiting: number, bytes: number): Admit {
    if (this.#run.n > 0) this.#flush();
    const source = share.source;
    this.refusedFor = undefined;
    if (!this.#slotFor(share)) return Admit.No;
    if (this.#byKey.size <= 1) return Admit.Light;
    if (this.#full(share) || !this.#roomFor(share, bytes)) return Admit.No;
    let light = share.inflight + waiting <= BULK_DEPTH * this.contended;
    if (source !== undefined && source.connections > 1 && this.#sources.othersBusy(source)) {
      if (!this.#sourceRoom(source, bytes)) {
        this.refusedFor = source;
        return Admit.No;
      }
      if (source.inflight + source.waiting > SOURCE_DEPTH * this.contended) light = false;
    }
    if (light) return Admit.Light;
    const bulk = this.#bulk(true, share);
    if (bulk === Admit.No) this.bulkRefused++;
    return bulk;
  }

  /** Whether the source of `share` may take a slot now (slots.ts). */
  #slotFor(share: ClientShare): boolean {
    const source = share.source;
    if (source === undefined) return true;
    const used = this.#inflight;
    const capacity = this.#capacity();
    if (!this.#sources.netRoom(source, used, capacity)) {
      // Its own answers may let it go (a light source: netRoom), else its network's.
      this.refusedFor = source.inflight > 0 ? source : source.net;
      return false;
    }
    if (source.inflight === 0) return true;
    const mine = source.inflight + source.waiting > 0 ? 0 : 1;
    if (mayHold(source, this.#now(), { used, capacity, busy: this.#sources.busy + mine })) {
      return true;
    }
    this.refusedFor = source;
    return false;
  }

  /** Whether `share` has `shares` shares on the backends, stuck requests aside (slots.ts). */
  #full(share: ClientShare, shares = 1): boolean {
    const n = shares * this.contended;
    return share.inflight >= n && share.inflight - this.#stuck(share) >= n;
  }

  /** Whether `share` may have a request of `bytes` more on the backends (bytes' rules). */
  #roomFor(share: ClientShare, bytes: number): boolean {
    if (share.inflight > 0 && share.bytes + bytes > SHARE_BYTES) return false;
    return this.#pacing.room(bytes, share);
  }

  /**
   * Whether a request of a bulk flow may go now, as far as the bulk flows'
   * allowance goes (and a client that reads its answers has requests waiting).
   */
  bulkDue(): boolean {
    if (this.#run.n > 0) this.#flush();
    return this.#bulk(false) !== Admit.No && this.#allowance.readerWaits(SHARED_KEY);
  }

  /**
   * Whether a request of a bulk flow (`share`'s, or any) may go now (`wake`:
   * a pump is due when the grace ends).
   */
  #bulk(wake = true, share?: ClientShare): Admit {
    return this.#allowance.due(this.#inflight, wake, share, SHARED_KEY);
  }

  /**
   * No waiting request may go now: the queue is pumped again in STUCK_MS
   * while requests are on the backends, as they may get stuck there rather
   * than answered (then no answer comes to pump it, and what they held in
   * the shares is freed only by their age: slots.ts).
   */
  stalled(): true {
    if (this.inflight > 0) this.#wake.in(STUCK_MS);
    return true;
  }

  /** Of `held`, those stuck on a backend (Sitting.stuck). */
  #stuck(held: Held): number {
    return this.#sitting.stuck(held, this.#now());
  }

  /** Requests on `backend` sent lately (Sitting.young): runs.ts's busy. */
  young(backend: object): number {
    if (this.#run.n > 0) this.#flush();
    return this.#sitting.young(backend, this.#now());
  }

  /** Where a request goes instead of `picked` when requests sit on it (Sitting.elsewhere). */
  unstuck<B extends { readonly available: boolean }>(picked: B, list: readonly B[], avoid?: B): B {
    if (this.#run.n > 0) this.#flush();
    return this.#sitting.elsewhere(picked, list, avoid, this.#now());
  }

  /** A request of `share`, of `bytes`, went to `backend` (`bulk`: as a bulk flow's). */
  took(share: ClientShare, bulk: boolean, bytes: number, backend: object): void {
    if (this.#run.n > 0) this.#flush();
    const now = this.#now();
    share.took(now);
    this.#sitting.took(backend, now);
    share.bytes += bytes;
    this.#inflight++;
    this.#pacing.took(bytes, backend, now);
    const source = share.source;
    if (source !== undefined) {
      if (source.inflight + source.waiting === 0) this.#sources.busy++;
      source.took(now);
      source.bytes += bytes;
    }
    this.#allowance.took(bulk, now);
  }

  /**
   * A request of `share` sent as `bulk` at `sentAt`, of `bytes`, left
   * `backend` at `now` (the dispatcher's clock; -Infinity: it was never
   * sent). The answers of a run count once (answer_run.ts).
   */
  gave(
    share: ClientShare,
    bulk: boolean,
    now: number,
    sent: { bytes?: number; backend?: object; sentAt: number },
  ): void {
    const run = this.#run;
    const small = (sent.bytes ?? 0) < PACED_BYTES;
    if (run.n > 0) {
      if (small && run.joins(share, bulk, now, sent)) {
        run.n++;
        run.bytes += sent.bytes ?? 0;
        return;
      }
      this.#flush();
    }
    if (small && now > -Infinity) return run.start(share, bulk, now, sent);
    // A job on its way: its backend is set before it is sent.
    this.#gave(share, bulk, now, sent, 1);
  }

  /** Counts the pending run of answers. */
  #flush(): void {
    const run = this.#run;
    const n = run.n;
    const share = run.share!;
    run.n = 0;
    this.#gave(share, run.bulk, run.now, run, n);
    run.clear();
  }

  /** `n` requests (more than one: each under PACED_BYTES) of `sent.bytes` together (see gave). */
  #gave(
    share: ClientShare,
    bulk: boolean,
    now: number,
    sent: { bytes?: number; backend?: object; sentAt: number },
    n: number,
  ): void {
    const { bytes = 0, sentAt } = sent;
    const backend = sent.backend!;
    const at = now > -Infinity ? now : sentAt;
    if (now > -Infinity) this.#answers.add(now - sentAt, n);
    share.gave(sentAt, at, n);
    this.#sitting.gave(backend, sentAt, at, n);
    share.bytes -= bytes;
    this.#inflight -= n;
    this.#pacing.gave(bytes, backend, now, sentAt, n);
    const source = share.source;
    if (source !== undefined) {
      source.gave(sentAt, at, n);
      source.bytes -= bytes;
      if (source.inflight + source.waiting === 0) this.#sources.wentIdle(source, at);
      this.#freed?.(source, n);
    }
    this.#allowance.gave(bulk, sentAt, at, now, n);
  }

  /** A request of `share` began (1) or stopped (-1) waiting in the queue. */
  queued(share: ClientShare, n: 1 | -1): void {
    if (this.#run.n > 0) this.#flush();
    share.waiting += n;
    this.#allowance.queued(share, n);
    const source = share.source;
    if (source === undefined) return;
    const before = source.inflight + source.waiting;
    source.waiting += n;
    if (before === 0) this.#sources.busy++;
    else if (before + n === 0) this.#sources.wentIdle(source, this.#now());
  }

  #sourceFor(key: object): SourceShare | undefined {
    const name = this.#sourceOf?.(key);
    return name === undefined ? undefined : this.#sources.join(name);
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
    this.#wake.stop();
  }

  /** Forgets connections idle for ACTIVE_MS: nothing on backends, nothing waiting. */
  #sweep(): void {
    if (this.#run.n > 0) this.#flush();
    const before = this.#now() - ACTIVE_MS;
    for (const [key, share] of this.#byKey) {
      if (share.inflight === 0 && share.lastAt < before && !this.#waiting(key)) {
        this.#byKey.delete(key);
        if (this.#last === share) this.#last = undefined;
        if (share.source !== undefined) this.#sources.leave(share.source);
      }
    }
    if (this.#byKey.size === 0) this.stop();
  }
}
