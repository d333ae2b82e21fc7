/**
 * Reads (and the writes `send` does not finish) of Deno's plain TCP
 * sockets through an epoll instance of our own (Linux, FFI: raw_tcp.ts),
 * for a process whose connections write with raw_send.ts (the balancer).
 * A read through the runtime's op costs a promise, the op's dispatch and a
 * turn of the event loop; here the main thread waits in `epoll_wait` for
 * every adopted socket at once, woken by the kernel as the runtime itself
 * is, and reads each ready one with one `recv` into a buffer they share.
 *
 * A socket is adopted between two reads, with no read or write of the
 * runtime's in flight, once raw_send.ts knows its descriptor: it is taken
 * off the runtime's epoll (tokio's, found by the descriptor in
 * /proc/self/fdinfo) and put on ours, so the runtime never wakes for it; its
 * Deno.Conn stays open, and closing it closes the socket (tokio's own
 * removal then finds it gone, which it ignores). Nothing but its FramedConn
 * may read or write that Deno.Conn from then on: an op on it would wait for
 * a readiness the runtime no longer hears of.
 *
 * The runtime's epoll is itself on ours: while sockets are busy the loop
 * waits on this thread, and whenever the runtime has something ready (a
 * socket of its own, another thread's wake-up) the loop lets it turn at
 * once (poll_turn.ts); a timer of ours fires every {@link TURN_MS} so that
 * the runtime's timers run then too. After {@link QUIET_WAITS} of those
 * with no socket ready the wait moves to another thread with no timeout
 * (the runtime's epoll and the timer left out of it): an idle process takes
 * no CPU, and its event loop runs as it does without this. That wait costs
 * a hop between threads each way, more than the runtime's own read: when
 * traffic is sparse (see SPARSE_MS) the sockets that end it go back onto the
 * runtime's epoll as they were there, until reads come close together again.
 */
import { setImmediate } from "node:timers";
import {
  EAGAIN,
  EPOLLIN,
  EPOLLOUT,
  EPOLLRDHUP,
  type FixedBuffer,
  type Poller,
  type RawTcp,
} from "./raw_tcp.ts";
import { pollTurn } from "./poll_turn.ts";
import { EpollEntries, type RuntimeEntry } from "./raw_epoll.ts";
import { LogBudget } from "./_log.ts";

const faults = new LogBudget("raw reads");

/**
 * While busy the runtime's event loop turns at least this often (ms): its
 * timers are that late at most (Deno's own fire 1-4 ms late: poll_turn.ts).
 * A tick is a turn of the event loop, and 4 of them with no socket ready
 * send the wait to another thread and back (a hop each way): at 1 ms, under
 * load (gaps of a few ms between a client's bursts), the balancer took
 * 1.79 µs a request more at c=16 (12.60 against 10.83, lower in 6 of 6
 * rounds) and 0.34 more at c=64 (4.45 against 4.06, 5 of 6), 1.07-1.09x
 * fewer requests a second (/tmp/b45/ab2.py, both restarted each round).
 */
const TURN_MS = 4;
/** What a wait found ready (see #dispatch). */
const SOCKETS = 1, RUNTIME_READY = 2, TICK = 4;
/**
 * Where the loop waits: on this thread for as long as sockets keep being
 * ready (BUSY); on this thread for one more socket event (ONE: the answer
 * to what a far wait brought in, likely soon); or on another thread (FAR).
 */
const BUSY = 0, ONE = 1, FAR = 2;
/** Rounds of microtasks let run before a wait when nothing is ready. */
const SETTLE_ROUNDS = 3;
/** Ticks in a row with no socket ready after which the wait moves to another thread. */
const QUIET_WAITS = 4;
/**
 * A far wait that a socket ends within this (ms) is dense traffic; after
 * {@link DENSE_WAITS} of those in a row the wait moves back onto this thread.
 */
const DENSE_MS = 1;
const DENSE_WAITS = 2;
/**
 * A socket that ends a far wait this long (ms) or longer goes back to the
 * runtime (see RawSocket.giveBack), {@link CALM_MS} into the calm; reads asked for (adopt) at least
 * {@link ADOPT_AFTER} times in a row within DENSE_MS of each other, or while
 * the loop is busy, bring sockets back.
 */
const SPARSE_MS = 2;
/** And only once the loop has been off its busy waits this long (ms): not for a lull in a busy spell. */
const CALM_MS = 50;
const ADOPT_AFTER = 2;
/** Ready descriptors taken per wait. */
const MAX_EVENTS = 256;
/** The shared read buffer: a read takes at most this much. */
const READ_BYTES = 64 * 1024;
/** The tag of the runtime's epoll on ours (a socket's is never 0). */
const RUNTIME = 0;

/** A socket on our epoll: what it waits for, and what is called when it is ready. */
export interface RawSocketHandler {
  /** Readable (or hung up, or in error): read it. */
  readable(): void;
  /** Writable (or in error): write what waits. */
  writable(): void;
  /** Given back to the runtime (see RawSocket.giveBack): its reads and writes go through the ops again. */
  returned(): void;
}

/** One adopted socket. */
export class RawSocket {
  tag = 0;
  #reading = true;
  #writing = false;
  /** Whether it is on the epoll now (it is taken off while it waits for nothing). */
  #watched = true;

  constructor(
    readonly reads: RawReads,
    readonly fd: number,
    readonly handler: RawSocketHandler,
    readonly entry: RuntimeEntry,
  ) {}

  /** Whether it waits to read. */
  get reading(): boolean {
    return this.#reading;
  }

  /** Waits to read (`on`), or not: a paused or ended read side. */
  read(on: boolean): void {
    if (this.#reading === on) return;
    this.#reading = on;
    this.#interest();
  }

  /** Waits to write (`on`), or not. */
  write(on: boolean): void {
    if (this.#writing === on) return;
    this.#writing = on;
    this.#interest();
  }

  /**
   * Off the epoll while it waits for nothing: a hang-up or error is
   * reported whatever the interest, and would be again at every wait.
   */
  #interest(): void {
    if (this.tag === 0) return;
    const events = (this.#reading ? EPOLLIN | EPOLLRDHUP : 0) | (this.#writing ? EPOLLOUT : 0);
    if (events === 0) {
      if (this.#watched) this.reads.poller.remove(this.fd);
      this.#watched = false;
    } else if (this.#watched) this.reads.poller.modify(this.fd, events, this.tag);
    else this.#watched = this.reads.poller.add(this.fd, events, this.tag);
  }

  ready(events: number): void {
    if ((events & EPOLLOUT) !== 0 || (this.#writing && !this.#reading)) this.handler.writable();
    if (this.#reading && this.tag !== 0) this.handler.readable();
  }

  /** Off our epoll for good (before its Deno.Conn closes the descriptor). */
  release(): void {
    if (this.tag === 0) return;
    this.reads.release(this);
    if (this.#watched) this.reads.poller.remove(this.fd);
    this.tag = 0;
    this.#watched = false;
  }

  /**
   * Back onto the runtime's epoll as it was there, if it waits to read and
   * for nothing else (a sparse socket: see #run): whether it went. Its
   * handler then reads and writes it through the runtime's ops.
   */
  giveBack(): boolean {
    if (this.tag === 0 || !this.#reading || this.#writing || !this.reads.giveBack(this)) {
      return false;
    }
    this.tag = 0;
    this.#watched = false;
    this.handler.returned();
    return true;
  }

  /** Reads into the shared buffer: the count (0: end of stream), or -errno. */
  recv(): number {
    return this.reads.raw.recvInto(this.fd, this.reads.buffer);
  }
}

export class RawReads {
  readonly raw: RawTcp;
  readonly poller: Poller;
  /** The read buffer every socket shares (frames are handed over before the next read). */
  readonly buffer: FixedBuffer;
  readonly #sockets: (RawSocket | undefined)[] = [];
  #tags = RUNTIME;
  #count = 0;
  #running = false;
  /** The runtime's epoll (-1: not found yet; -2: none found, nothing is adopted). */
  #runtime = -1;
  /** Signalled to end a wait on the other thread early. */
  readonly #wake: number;
  /** Fires every TURN_MS while busy (see #busy). */
  readonly #tick: number;
  #far = false;
  #runtimeWatched = false;
  /** Where the loop waits (BUSY, ONE, FAR: see #run). */
  #mode = BUSY;
  /** How the runtime's epoll has its sockets (see EpollEntries). */
  #entries: EpollEntries | undefined;
  /** Reads asked for in a row (adopt) within DENSE_MS of each other, and when the last was. */
  #asks = 0;
  #askedAt = -Infinity;

  constructor(raw: RawTcp) {
    this.raw = raw;
    this.poller = raw.poller(MAX_EVENTS);
    this.buffer = raw.fixedBuffer(READ_BYTES);
    this.#wake = raw.eventFd();
    this.poller.add(this.#wake, EPOLLIN, RUNTIME);
    this.#tick = raw.timerFd();
    this.poller.add(this.#tick, EPOLLIN, RUNTIME);
  }

  /** Sockets adopted now. */
  get count(): number {
    return this.#count;
  }

  /**
   * Takes `fd` (a socket of the runtime's, with no read or write of its
   * own in flight) off the runtime's epoll and onto ours, reading it from
   * now on; null when not now (reads are sparse: the runtime's reads cost
   * less then, see #run), undefined when it cannot be (it stays the
   * runtime's).
   */
  adopt(fd: number, handler: RawSocketHandler): RawSocket | undefined | null {
    if (this.#runtime === -1) this.#runtime = this.#findRuntime(fd);
    if (this.#runtime < 0) return undefined;
    const now = performance.now();
    this.#asks = now - this.#askedAt < DENSE_MS ? this.#asks + 1 : 0;
    this.#askedAt = now;
    if (this.#asks < ADOPT_AFTER && !(this.#running && this.#mode === BUSY)) return null;
    this.#entries ??= new EpollEntries(this.#runtime);
    const entry = this.#entries.of(fd, now);
    if (entry === null || entry === undefined) return entry;
    const socket = new RawSocket(this, fd, handler, entry);
    socket.tag = this.#tags = (this.#tags + 1) >>> 0 || 1;
    if (!this.poller.add(fd, EPOLLIN | EPOLLRDHUP, socket.tag)) return undefined;
    if (!this.raw.forget(this.#runtime, fd)) {
      this.poller.remove(fd);
      return undefined;
    }
    this.#sockets[fd] = socket;
    this.#count++;
    this.#start();
    return socket;
  }

  /** Moves `socket` off our epoll and back onto the runtime's (see RawSocket.giveBack). */
  giveBack(socket: RawSocket): boolean {
    const { fd, entry } = socket;
    this.poller.remove(fd);
    if (!this.poller.restore(this.#runtime, fd, entry.events, entry.data)) {
      this.poller.add(fd, EPOLLIN | EPOLLRDHUP, socket.tag);
      return false;
    }
    this.#entries?.forget(fd);
    this.release(socket);
    return true;
  }

  #start(): void {
    if (this.#running) return;
    this.#running = true;
    this.#run().finally(() => {
      this.#running = false;
      if (this.#count > 0) this.#start(); // adopted while the loop was ending
    });
  }

  release(socket: RawSocket): void {
    if (this.#sockets[socket.fd] === socket) this.#sockets[socket.fd] = undefined;
    // The last one: a wait on the other thread ends, and the loop with it.
    if (--this.#count === 0 && this.#far) this.raw.signal(this.#wake);
  }

  /** The runtime's epoll: the one instance (not ours) that watches `fd`; -2 for none. */
  #findRuntime(fd: number): number {
    try {
      const line = new RegExp(`^tfd:\\s+${fd}\\s`, "m");
      for (const entry of Deno.readDirSync("/proc/self/fd")) {
        const ep = Number(entry.name);
        if (Deno.readLinkSync(`/proc/self/fd/${ep}`) !== "anon_inode:[eventpoll]") continue;
        if (line.test(Deno.readTextFileSync(`/proc/self/fdinfo/${ep}`))) {
          if (!this.poller.add(ep, 0, RUNTIME)) continue;
          return ep;
        }
      }
    } catch {
      // No /proc: the runtime reads every socket.
    }
    return -2;
  }

  async #run(): Promise<void> {
    await null; // not inside adopt(): its caller has not taken the socket yet
    this.#mode = BUSY;
    /** Ticks in a row with no socket ready. */
    let quiet = 0;
    /** Far waits in a row that a socket ended within DENSE_MS. */
    let dense = 0;
    /** Whether the last wait was followed by a turn of the event loop. */
    let turned = false;
    /** When the loop last left its busy waits. */
    let calmFrom = 0;
    const poller = this.poller;
    while (this.#count > 0) {
      let n: number;
      let waited = 0, now = 0;
      const mode = this.#mode;
      if (mode !== FAR) {
        this.#busy(true);
        n = poller.poll(-1);
      } else {
        // The runtime's due work runs before a wait on the other thread.
        if (!turned) await immediate();
        if (this.#count === 0) break;
        this.#busy(false);
        this.#far = true;
        const from = performance.now();
        n = await poller.wait(-1);
        this.#far = false;
        now = performance.now();
        waited = now - from;
      }
      const ready = this.#dispatch(n);
      turned = false;
      if ((ready & SOCKETS) !== 0) {
        quiet = 0;
        if (mode === FAR) {
          // A far wait costs a hop between threads each way: sparse
          // sockets (a call now and then) go back to the runtime, whose
          // reads cost less then; the answer to what came in is likely
          // soon, and waited for here (ONE); dense traffic stays here.
          if (waited >= SPARSE_MS && now - calmFrom >= CALM_MS) this.#giveBack(n);
          dense = waited < DENSE_MS ? dense + 1 : 0;
          this.#mode = dense >= DENSE_WAITS ? BUSY : ONE;
        } else if (mode === ONE) {
          this.#mode = FAR;
          turned = true; // no turn is owed: the far wait does not hold the runtime up
        }
      } else if ((ready & TICK) !== 0 && ++quiet >= QUIET_WAITS) {
        if (mode === BUSY) calmFrom = performance.now();
        this.#mode = FAR;
      }
      if ((ready & RUNTIME_READY) !== 0) await pollTurn();
      else if ((ready & TICK) !== 0) {
        await immediate(); // the runtime's timers and due work
        turned = true;
      } else {
        // What was read started microtasks (a flush queued by a frame's
        // handler, and what that queues): they run before the next wait.
        for (let i = 0; i < SETTLE_ROUNDS; i++) await null;
      }
    }
    this.#busy(false);
  }

  /** Gives the sockets of the last wait back to the runtime where they can go. */
  #giveBack(n: number): void {
    const poller = this.poller;
    for (let i = 0; i < n; i++) {
      const tag = poller.tag(i);
      const socket = tag === RUNTIME ? undefined : this.#sockets[poller.fd(i)];
      if (socket?.tag === tag) socket.giveBack();
    }
  }

  /**
   * Busy (`on`): the runtime's epoll is on ours, and the tick fires every
   * TURN_MS. Else neither (a wait on the other thread). A wait with a
   * timeout arms and cancels a kernel timer each time, ~3 µs a wait in
   * this VM (an echo's round trip 16.9 against 13.6 µs of CPU); the tick is
   * one timer for every wait.
   */
  #busy(on: boolean): void {
    if (this.#runtimeWatched === on) return;
    this.#runtimeWatched = on;
    this.poller.modify(this.#runtime, on ? EPOLLIN : 0, RUNTIME);
    this.raw.every(this.#tick, on ? TURN_MS : 0);
  }

  /** Calls the ready sockets: which of SOCKETS, RUNTIME_READY, TICK were ready. */
  #dispatch(n: number): number {
    const poller = this.poller;
    let ready = 0;
    for (let i = 0; i < n; i++) {
      const tag = poller.tag(i);
      if (tag === RUNTIME) {
        const fd = poller.fd(i);
        if (fd === this.#tick) {
          this.raw.drain(fd);
          ready |= TICK;
        } else if (fd === this.#wake) this.raw.drain(fd);
        else ready |= RUNTIME_READY;
        continue;
      }
      const socket = this.#sockets[poller.fd(i)];
      if (socket === undefined || socket.tag !== tag) continue;
      ready |= SOCKETS;
      try {
        socket.ready(poller.events(i));
      } catch (err) {
        // A fault of ours in one connection's handling: said, and the others go on.
        faults.error("Reading a socket failed: {error}", { error: String(err) });
      }
    }
    return ready;
  }
}

function immediate(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** The process's reader, once raw_send.ts turned it on. */
export let rawReads: RawReads | undefined;

/**
 * Reads this process's adopted sockets through our epoll from now on
 * (`DIST_TCP_READS=runtime` keeps the runtime's reads).
 */
export function useRawReads(raw: RawTcp): void {
  if (Deno.env.get("DIST_TCP_READS") === "runtime") return;
  rawReads ??= new RawReads(raw);
}

export { EAGAIN };
