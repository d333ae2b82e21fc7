/**
 * One proxied connection over libc's sockets (raw.ts): what is read from
 * a side goes to the other at once, from the loop's shared buffer; only
 * what that side did not take is kept (a copy: at most a read, splice.ts's
 * MAX_BUFFER), and the side it came from is not read until it is taken
 * (backpressure both ways). The end of one
 * side's stream shuts down the other's write half; both ended, or an error
 * either side, closes both (the reasons of splice.ts's {@link EndReason}).
 */
import {
  EAGAIN,
  ENOTCONN,
  EPOLLERR,
  EPOLLHUP,
  EPOLLIN,
  EPOLLOUT,
  EPOLLRDHUP,
} from "../../../wire/raw_tcp.ts";
import type { Spliced } from "./io.ts";
import type { Handler, Later, RawClient, RawConn, RawIo } from "./raw.ts";
import { type Ended, EndReason, type IdleClock, type SpliceHooks } from "./splice.ts";

/**
 * What a side is watched for while it is read: its FIN is told apart from
 * data (EPOLLRDHUP), so the last bytes before it go on with a FIN of their
 * own, in one segment (the read that returns 0 is made at once after them).
 */
const READING = EPOLLIN | EPOLLRDHUP;

/** A side's `events` while it is not in the poller at all (hung up, its bytes still to pass). */
const UNWATCHED = -1;

/** One side of a splice: what is read from it goes to `peer`. */
class Side implements Handler, Later {
  tag = 0;
  peer!: Side;
  /** Bytes for this side that it has not taken yet. */
  pending: Uint8Array | undefined;
  /** Its stream ended (read EOF). */
  eof = false;
  /** The events registered for it ({@link UNWATCHED}: none, and not in the poller). */
  events = READING;

  constructor(readonly splice: RawSplice, readonly conn: RawConn, readonly client: boolean) {}

  ready(events: number): void {
    this.splice.ready(this, events);
  }

  /** Its stream ended in the batch just handled: the peer is told so now. */
  afterBatch(): void {
    this.splice.halfClose(this);
  }
}

/** A splice, and once it ended how (itself: no object made at its end). */
export class RawSplice implements Spliced, Ended {
  up = 0;
  down = 0;
  reason = EndReason.Closed;
  detail = "";
  ms = 0;
  active: number;
  readonly started: number;
  readonly #io: RawIo;
  readonly #clock: IdleClock;
  readonly #client: Side;
  readonly #backend: Side;
  readonly #hooks: SpliceHooks;
  #spoke = false;
  #ended = false;
  /** Made when asked for (a drain): most splices end with no one waiting. */
  #done: Promise<Ended> | undefined;
  #resolve: ((ended: Ended) => void) | undefined;

  constructor(io: RawIo, client: RawClient, backend: RawConn, hooks: SpliceHooks) {
    this.#io = io;
    this.started = io.clock();
    this.#clock = hooks.clock;
    this.active = hooks.clock.tick;
    this.#hooks = hooks;
    this.#client = new Side(this, client, true);
    this.#backend = new Side(this, backend, false);
    this.#client.peer = this.#backend;
    this.#backend.peer = this.#client;
    if (client.closed || backend.closed) {
      // Closed to make room while its backend was being dialed.
      this.end(EndReason.Evicted);
      return;
    }
    io.register(client.fd, this.#client, READING);
    io.register(backend.fd, this.#backend, READING, backend.watched);
    // A client speaks first, mostly, and has by now: no need to wait a turn to read it.
    this.#read(this.#client, 0);
  }

  get done(): Promise<Ended> {
    if (this.#done === undefined) {
      this.#done = this.#ended
        ? Promise.resolve<Ended>(this)
        : new Promise((resolve) => this.#resolve = resolve);
    }
    return this.#done;
  }

  get idle(): boolean {
    return this.#clock.tick - this.active > this.#clock.ticks; // never early (H-C5)
  }

  end(reason: EndReason): void {
    this.#finish(reason, "");
  }

  ready(side: Side, events: number): void {
    if (side.pending !== undefined && (events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) !== 0) {
      this.#flush(side);
      if (this.#ended) return;
    }
    if ((events & (EPOLLIN | EPOLLERR | EPOLLHUP)) === 0) return;
    if (!side.eof && side.peer.pending === undefined) this.#read(side, events);
    else if ((events & (EPOLLERR | EPOLLHUP)) === 0) return;
    else if ((events & EPOLLERR) !== 0 || side.eof || side.pending !== undefined) {
      this.#broken(side);
    } else {
      // Hung up, not broken: its FIN came, and we ended our way to it (its peer's FIN), but
      // what it sent before its FIN still waits to be read once its peer took what waits for it.
      // A hang-up cannot be masked: it is unwatched till then (#interest watches it again).
      this.#io.poller.remove(side.conn.fd);
      side.events = UNWATCHED;
    }
  }

  /** Reads `from` (ready for `events`) and passes what came to its peer. */
  /** `corked`: a read after bytes sent with MSG_MORE, which the FIN it may find sends at once. */
  #read(from: Side, events: number, corked = false): void {
    const io = this.#io;
    const buf = io.buffer;
    const n = io.raw.recvInto(from.conn.fd, buf);
    if (n === -EAGAIN) return;
    if (n < 0) return this.#failed(from, n);
    if (n === 0) return this.#eof(from, corked);
    this.active = this.#clock.tick;
    if (from.client) {
      this.up += n;
      if (!this.#spoke) {
        this.#spoke = true;
        this.#hooks.spoke();
      }
    } else this.down += n;
    const to = from.peer;
    // The stream ends with these bytes (its FIN came before this read, and the read took all;
    // not a reset, which the next read reports).
    const last = (events & (EPOLLRDHUP | EPOLLERR)) === EPOLLRDHUP && n < buf.bytes.length;
    const w = io.raw.sendFrom(to.conn.fd, buf, n, last);
    if (w === n) {
      // The shutdown or close this leads to sends them, with the FIN. A read stops short at TCP's
      // urgent mark too, the bytes after it still queued: one more read says which (it was taken
      // for the end, and 4,000 bytes after an urgent byte were lost, hostile44c H-C4).
      if (last) this.#read(from, EPOLLIN, true);
      return;
    }
    if (w < 0 && w !== -EAGAIN) return this.#failed(to, w);
    // The rest waits for `to` to take it; `from` is not read until then.
    to.pending = buf.bytes.slice(Math.max(0, w), n);
    this.#interest(from);
    this.#interest(to);
  }

  #flush(to: Side): void {
    const p = to.pending!;
    const w = this.#io.raw.send(to.conn.fd, p, p.length);
    if (w === -EAGAIN) return;
    if (w < 0) return this.#failed(to, w);
    this.active = this.#clock.tick;
    if (w < p.length) {
      to.pending = p.subarray(w);
      return;
    }
    to.pending = undefined;
    this.#interest(to);
    this.#interest(to.peer);
  }

  /** `corked`: its last bytes wait in the kernel for the shutdown (MSG_MORE). */
  #eof(from: Side, corked = false): void {
    from.eof = true;
    // Both streams ended: closing both sends each side its FIN.
    if (from.peer.eof) return this.#finish(EndReason.Closed, "");
    // After the batch: the other side's end may be in it too (both ends came at once), and then
    // closing both is all there is to do.
    if (this.#io.dispatching && !corked) this.#io.later.push(from);
    else this.halfClose(from);
  }

  /** The other side sees the end of the stream, and may still answer. */
  halfClose(from: Side): void {
    if (this.#ended) return;
    const r = this.#io.raw.shutdownWrite(from.peer.conn.fd);
    if (r < 0 && r !== -ENOTCONN) return this.#failed(from.peer, r);
    this.#interest(from);
  }

  /** An error or hang-up on a side not being read now. */
  #broken(side: Side): void {
    const err = this.#io.raw.socketError(side.conn.fd);
    this.#finish(
      side.client ? EndReason.ClientError : EndReason.BackendError,
      err < 0 ? this.#io.raw.describe(err) : "hung up",
    );
  }

  /** Reads `side` unless what it sent still waits; writes it while something waits for it. */
  #interest(side: Side): void {
    let events = !side.eof && side.peer.pending === undefined ? READING : 0;
    if (side.pending !== undefined) events |= EPOLLOUT;
    if (events === side.events) return;
    const unwatched = side.events === UNWATCHED;
    if (unwatched && events === 0) return;
    side.events = events;
    if (unwatched) this.#io.poller.add(side.conn.fd, events, side.tag);
    else this.#io.poller.modify(side.conn.fd, events, side.tag);
  }

  #failed(side: Side, errno: number): void {
    this.#finish(
      side.client ? EndReason.ClientError : EndReason.BackendError,
      this.#io.raw.describe(errno),
    );
  }

  #finish(reason: EndReason, detail: string): void {
    if (this.#ended) return;
    this.#ended = true;
    this.reason = reason;
    this.detail = detail;
    this.ms = this.#io.clock() - this.started;
    this.#client.conn.close();
    // A client that failed (reset, gone) is an aborted request or upload: the backend is told so
    // with a reset, as HAProxy does, not a FIN that reads as its whole end (hostile41a W2). A
    // backend that failed gives its client a FIN, as HAProxy's: what it sent is still delivered.
    this.#backend.conn.close(reason === EndReason.ClientError);
    this.#resolve?.(this);
    this.#hooks.ended(this);
  }
}
