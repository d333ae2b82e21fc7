/**
 * The L4 mode over libc's sockets (wire/raw_tcp.ts): one epoll instance,
 * non-blocking sockets, one event loop of our own inside Deno's.
 *
 * - While connections are busy the loop waits for them on this thread, at
 *   most {@link WAIT_MS} at a time, woken by the kernel directly (the data
 *   path is callbacks: no promise, no allocation a request); Deno's event
 *   loop turns at least every {@link TURN_MS} while events come, and at
 *   the latest after a wait (health checks, metrics, signals, timers and
 *   promises run then). A wait with no event ends that: the next waits on
 *   another thread, with no timeout but the next dial's (an eventfd wakes
 *   it to stop): an idle balancer takes no CPU. A connection that sends a
 *   byte every few ms costs one wake-up an event, as through HAProxy (stop
 *   42's loop waited 1 ms at a time and stayed for 4 empty waits after each
 *   event: 4 to 5 wake-ups an event, hostile39a P4).
 * - Connections are accepted up to {@link ACCEPT_BATCH} a readiness (the
 *   others' events come between), dialed at once (over loopback the connect
 *   is mostly done when `connect` returns), and spliced (raw_splice.ts).
 * - Every registration carries a tag as well as its descriptor, so an event
 *   of a descriptor closed since (and reused) reaches no one.
 */
import {
  EAGAIN,
  EPOLLIN,
  EPOLLOUT,
  type FixedBuffer,
  type Peer,
  type Poller,
  type RawTcp,
  type SocketAddress,
} from "../../../wire/raw_tcp.ts";
import { setImmediate } from "node:timers";
import { formatAddress } from "../../../config/mod.ts";
import { Backoff, DistError } from "../../../wire/mod.ts";
import { log, LogBudget } from "../log.ts";
import type { BackendConn, ClientConn, DialHooks, L4Io, Spliced } from "./io.ts";
import { MAX_BUFFER, type SpliceHooks } from "./splice.ts";
import { RawSplice } from "./raw_splice.ts";

/**
 * Longest wait on this thread (ms): Deno's event loop waits as long while
 * connections are quiet but not idle.
 */
const WAIT_MS = 10;
/** While events come, Deno's event loop turns at least this often (ms); promises settle then. */
const TURN_MS = 1;
/** Ready descriptors taken per wait. */
const MAX_EVENTS = 256;
/**
 * Connections accepted per readiness of the listener, HAProxy's
 * `tune.maxaccept`: the other connections' events come between. (64 made a
 * turn of the loop up to 10 ms under `wrk -c64` with `Connection: close`,
 * every answer in it waiting for 64 accepts and dials.)
 */
const ACCEPT_BATCH = 4;
/** Pending connections the kernel keeps for the listener. */
const BACKLOG = 1024;

/** Faults of ours in a connection's handling (at most 20 lines a second). */
const faultLines = new LogBudget("connections");

/** A fault of ours in one connection's handling: said, and the others' go on. */
function fault(err: unknown): void {
  faultLines.error("Connection handling failed: {error}", { error: String(err) });
}

/**
 * Lets Deno's event loop turn once: timers, I/O, promises. (An immediate: a
 * timer would wait 1–4 ms; a message to ourselves made ~1 KB of garbage a
 * turn, the most of what the loop allocated, and young-generation
 * collections every second or so that paused connections 1–18 ms.)
 */
function turn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** Something to be done once the batch of events being handled is. */
export interface Later {
  afterBatch(): void;
}

/** What the loop calls when a registered descriptor is ready. */
export interface Handler {
  tag: number;
  ready(events: number): void;
}

export class RawIo implements L4Io {
  readonly kind = "epoll (libc)";
  readonly addr: { hostname: string; port: number };
  readonly raw: RawTcp;
  readonly poller: Poller;
  /** Whether a batch of events is being handled now. */
  dispatching = false;
  /**
   * When the batch being handled began (read once a batch: the clock is an
   * op, and a new connection read it at its splice's start and end).
   */
  now = 0;
  /** What is to be done once the batch is handled. */
  later: Later[] = [];
  /** The same, while it is being done (two arrays, swapped: none made a batch). */
  #doing: Later[] = [];
  /** The read buffer every connection shares. */
  readonly buffer: FixedBuffer;
  readonly #handlers: (Handler | undefined)[] = [];
  #tags = 0;
  #listener: number;
  #take: ((client: ClientConn) => void) | undefined;
  #accepting: (() => void) | undefined;
  readonly #backoff = new Backoff({ min: 5, max: 1000 });
  /** Dials in flight, oldest first (one timeout for all: the oldest times out first). */
  #dials: Dial[] = [];
  #stopped = false;
  readonly #loop: Promise<void>;
  /** Signalled to end a wait on the other thread early. */
  readonly #wake: number;
  /** Whether the loop waits on the other thread now. */
  #far = false;
  /** Where the connection being accepted comes from (one object, read at each accept). */
  readonly #peer: Peer = { host: "", port: 0 };
  /** Backends' socket addresses, by their parsed address (one object a backend: mod.ts). */
  readonly #addresses = new Map<{ host: string; port: number }, SocketAddress>();

  /** A listener on `host:port`, or undefined when `host` is a name or the bind failed. */
  static listen(raw: RawTcp, host: string, port: number): RawIo | undefined {
    const address = raw.address(host, port);
    if (address === undefined) return undefined;
    const bound = raw.listen(address, BACKLOG);
    if (typeof bound === "number") return undefined;
    return new RawIo(raw, bound.fd, { hostname: host, port: bound.port });
  }

  private constructor(raw: RawTcp, listener: number, addr: { hostname: string; port: number }) {
    this.raw = raw;
    this.addr = addr;
    this.#listener = listener;
    this.poller = raw.poller(MAX_EVENTS);
    this.buffer = raw.fixedBuffer(MAX_BUFFER);
    this.#wake = raw.eventFd();
    this.register(this.#wake, { tag: 0, ready: () => raw.drain(this.#wake) }, EPOLLIN);
    this.#loop = this.#run();
  }

  /** The time: the batch's while one is handled (off by at most its length), else read now. */
  clock(): number {
    return this.dispatching ? this.now : performance.now();
  }

  /** Calls `handler` when `fd` is ready for `events` (`watched`: `fd` was registered before). */
  register(fd: number, handler: Handler, events: number, watched = false): void {
    handler.tag = this.#tags = (this.#tags + 1) >>> 0;
    this.#handlers[fd] = handler;
    if (watched) this.poller.modify(fd, events, handler.tag);
    else this.poller.add(fd, events, handler.tag);
  }

  /** Closes `fd` (with a reset: `abort`): its events reach no one from now on. */
  closeFd(fd: number, abort = false): void {
    this.#handlers[fd] = undefined;
    if (abort) this.raw.abort(fd);
    else this.raw.close(fd);
  }

  accept(take: (client: ClientConn) => void): Promise<void> {
    this.#take = take;
    const listener: Handler = { tag: 0, ready: () => this.#acceptSome() };
    this.register(this.#listener, listener, EPOLLIN);
    return new Promise((resolve) => this.#accepting = resolve);
  }

  #acceptSome(): void {
    const peer = this.#peer;
    for (let i = 0; i < ACCEPT_BATCH && this.#listener >= 0; i++) {
      const fd = this.raw.accept(this.#listener, peer);
      if (fd === -EAGAIN) return;
      if (fd < 0) {
        // Out of file descriptors and the like: stop listening a little, don't spin.
        const ms = this.#backoff.next();
        log.warn("Accept failed: {error}; retrying in {ms} ms", {
          error: this.raw.describe(fd),
          ms,
        });
        this.poller.modify(this.#listener, 0, this.#handlers[this.#listener]!.tag);
        setTimeout(() => {
          const h = this.#handlers[this.#listener];
          if (h !== undefined) this.poller.modify(this.#listener, EPOLLIN, h.tag);
        }, ms);
        return;
      }
      this.#backoff.reset();
      this.#take!(new RawClient(this, fd, peer.host, peer.port));
    }
  }

  dial(address: { host: string; port: number }, timeoutMs: number, hooks: DialHooks): void {
    let to = this.#addresses.get(address);
    if (to === undefined) {
      if (this.#addresses.size >= 4096) this.#addresses.clear();
      to = this.raw.address(address.host, address.port)!;
      this.#addresses.set(address, to);
    }
    const fd = this.raw.connect(to);
    const done = fd < 0 ? fd : this.raw.connected(fd, to);
    if (done < 0) {
      if (fd >= 0) this.raw.close(fd);
      const message = `Cannot connect to ${formatAddress(address)}: ${this.raw.describe(done)}`;
      return hooks.failed(new DistError("UNAVAILABLE", message));
    }
    if (done === 1) return hooks.dialed(new RawConn(this, fd, false));
    const dial = new Dial(
      this,
      fd,
      formatAddress(address),
      this.clock() + timeoutMs,
      timeoutMs,
    );
    dial.hooks = hooks;
    this.register(fd, dial, EPOLLOUT);
    this.#dials.push(dial);
    // A wait on the other thread may be for longer than this dial may take.
    if (this.#far) this.raw.signal(this.#wake);
  }

  splice(client: ClientConn, backend: BackendConn, hooks: SpliceHooks): Spliced {
    return new RawSplice(this, client as RawClient, backend as RawConn, hooks);
  }

  closeListener(): void {
    if (this.#listener < 0) return;
    this.closeFd(this.#listener);
    this.#listener = -1;
    this.#accepting?.();
  }

  async close(): Promise<void> {
    this.closeListener();
    this.#stopped = true;
    this.raw.signal(this.#wake);
    await this.#loop;
    for (const d of this.#dials) d.fail("Aborted");
    this.closeFd(this.#wake);
    this.poller.close();
  }

  async #run(): Promise<void> {
    let far = true;
    let turned = 0;
    while (!this.#stopped) {
      let n: number;
      if (!far) n = this.poller.poll(WAIT_MS);
      else {
        this.#far = true;
        n = await this.poller.wait(this.#idleWait());
        this.#far = false;
      }
      const now = this.now = performance.now();
      // Deno's event loop turned while this waited on the other thread.
      if (far) turned = now;
      if (this.#dials.length > 0) this.#expire(now);
      if (n > 0) this.#dispatch(n);
      // A wait on this thread with no event: the next is on the other (awaited: Deno's turns).
      far = n === 0;
      if (far) continue;
      if (now - turned >= TURN_MS) {
        turned = now;
        await turn();
      }
    }
  }

  /**
   * How long an idle wait may last: until the oldest dial in flight times
   * out, else for as long as nothing happens (a dial started meanwhile, or
   * {@link close}, wakes it: the loop takes no CPU while idle).
   */
  #idleWait(): number {
    for (const d of this.#dials) {
      if (!d.settled) return Math.max(1, Math.ceil(d.deadline - performance.now()));
    }
    return -1;
  }

  #dispatch(n: number): void {
    this.dispatching = true;
    for (let i = 0; i < n; i++) {
      const h = this.#handlers[this.poller.fd(i)];
      if (h === undefined || h.tag !== this.poller.tag(i)) continue;
      try {
        h.ready(this.poller.events(i));
      } catch (err) {
        fault(err);
      }
    }
    this.dispatching = false;
    if (this.later.length === 0) return;
    const later = this.later;
    this.later = this.#doing;
    this.#doing = later;
    for (let i = 0; i < later.length; i++) {
      try {
        later[i].afterBatch();
      } catch (err) {
        fault(err);
      }
    }
    later.length = 0;
  }

  /** Fails the dials past their time at `now`. */
  #expire(now: number): void {
    let i = 0;
    for (; i < this.#dials.length; i++) {
      const d = this.#dials[i];
      if (d.settled) continue;
      if (d.deadline > now) break;
      d.fail(`Connect to ${d.where} timed out after ${d.timeoutMs} ms`, "TIMEOUT");
    }
    if (i > 0) this.#dials = this.#dials.slice(i);
  }
}

/** A connect in flight. */
class Dial implements Handler {
  tag = 0;
  settled = false;
  hooks!: DialHooks;

  constructor(
    readonly io: RawIo,
    readonly fd: number,
    readonly where: string,
    readonly deadline: number,
    readonly timeoutMs: number,
  ) {}

  ready(): void {
    if (this.settled) return;
    const err = this.io.raw.socketError(this.fd);
    if (err < 0) return this.fail(`Cannot connect to ${this.where}: ${this.io.raw.describe(err)}`);
    this.settled = true;
    // Connected: no event until the splice says what it waits for.
    this.io.poller.modify(this.fd, 0, this.tag);
    this.hooks.dialed(new RawConn(this.io, this.fd, true));
  }

  fail(message: string, code: "UNAVAILABLE" | "TIMEOUT" = "UNAVAILABLE"): void {
    if (this.settled) return;
    this.settled = true;
    this.io.closeFd(this.fd);
    this.hooks.failed(new DistError(code, message));
  }
}

export class RawConn implements BackendConn {
  closed = false;
  /** `watched`: registered with the poller already (its connect was waited for). */
  constructor(readonly io: RawIo, readonly fd: number, readonly watched: boolean) {}

  /** `abort`: with a reset, its peer told the connection was aborted (not a FIN). */
  close(abort = false): void {
    if (this.closed) return;
    this.closed = true;
    this.io.closeFd(this.fd, abort);
  }
}

export class RawClient extends RawConn implements ClientConn {
  constructor(io: RawIo, fd: number, readonly host: string, readonly port: number) {
    super(io, fd, false);
  }

  /** Made when a log line asks for it. */
  get remote(): string {
    return formatAddress(this);
  }
}
