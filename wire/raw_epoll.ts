/**
 * epoll for wire/raw_tcp.ts's sockets (Linux): interest in descriptors,
 * each with a tag beside it, and the ready ones of the last wait, read in
 * place from the events buffer.
 */
import type { Libc } from "./raw_tcp.ts";

/** epoll event bits. */
export const EPOLLIN = 0x1;
export const EPOLLOUT = 0x4;
export const EPOLLERR = 0x8;
export const EPOLLHUP = 0x10;
/** The peer shut its write half down (its FIN came): what is left to read is all there is. */
export const EPOLLRDHUP = 0x2000;

const EPOLL_CTL_ADD = 1;
const EPOLL_CTL_DEL = 2;
const EPOLL_CTL_MOD = 3;

/** `struct epoll_event`: packed (12 bytes) on x86_64, 16 bytes elsewhere (both little-endian). */
const EVENT_SIZE = Deno.build.arch === "x86_64" ? 12 : 16;
const DATA_AT = Deno.build.arch === "x86_64" ? 4 : 8;
/** The same in 32-bit words. */
const EVENT_WORDS = EVENT_SIZE / 4;
const DATA_WORD = DATA_AT / 4;

/** One epoll instance: interest in descriptors, and the ready ones. */
export class Poller {
  readonly #c: Libc;
  readonly #ep: number;
  readonly #max: number;
  readonly #one = new Uint8Array(EVENT_SIZE);
  readonly #oneView = new DataView(this.#one.buffer);
  readonly #events: Uint8Array;
  readonly #words: Uint32Array;
  /** Another buffer for the wait on another thread. */
  readonly #far: Uint8Array;

  constructor(c: Libc, ep: number, max: number) {
    this.#c = c;
    this.#ep = ep;
    this.#max = max;
    this.#events = new Uint8Array(EVENT_SIZE * max);
    this.#words = new Uint32Array(this.#events.buffer);
    this.#far = new Uint8Array(EVENT_SIZE * max);
  }

  /** The event's data: the descriptor, then the caller's tag (a u32 each). */
  #ctl(op: number, fd: number, events: number, tag: number): boolean {
    this.#oneView.setUint32(0, events, true);
    this.#oneView.setUint32(DATA_AT, fd, true);
    this.#oneView.setUint32(DATA_AT + 4, tag, true);
    return this.#c.epoll_ctl(this.#ep, op, fd, this.#one) === 0;
  }

  /** Watches `fd` for `events`; false when it is watched already (or cannot be). */
  add(fd: number, events: number, tag: number): boolean {
    return this.#ctl(EPOLL_CTL_ADD, fd, events, tag);
  }

  modify(fd: number, events: number, tag: number): boolean {
    return this.#ctl(EPOLL_CTL_MOD, fd, events, tag);
  }

  remove(fd: number): void {
    this.#ctl(EPOLL_CTL_DEL, fd, 0, 0);
  }

  /**
   * Puts `fd` back on another epoll instance `ep` (the runtime's) as it was
   * there: its events and data as that instance's fdinfo showed them.
   */
  restore(ep: number, fd: number, events: number, data: bigint): boolean {
    this.#oneView.setUint32(0, events, true);
    this.#oneView.setBigUint64(DATA_AT, data, true);
    return this.#c.epoll_ctl(ep, EPOLL_CTL_ADD, fd, this.#one) === 0;
  }

  /** Waits at most `ms` on this thread (blocking it): the number of ready descriptors. */
  poll(ms: number): number {
    return Math.max(0, this.#c.epoll_poll(this.#ep, this.#events, this.#max, ms));
  }

  /** Waits at most `ms` on another thread; the ready ones are then read as after {@link poll}. */
  async wait(ms: number): Promise<number> {
    const n = await this.#c.epoll_wait(this.#ep, this.#far, this.#max, ms);
    if (n > 0) this.#events.set(this.#far.subarray(0, n * EVENT_SIZE));
    return Math.max(0, n);
  }

  /** The `i`th ready descriptor of the last wait. */
  fd(i: number): number {
    return this.#words[i * EVENT_WORDS + DATA_WORD];
  }

  /** Its tag. */
  tag(i: number): number {
    return this.#words[i * EVENT_WORDS + DATA_WORD + 1];
  }

  /** Its events. */
  events(i: number): number {
    return this.#words[i * EVENT_WORDS];
  }

  close(): void {
    this.#c.close(this.#ep);
  }
}

/** Another epoll's fdinfo is read again at most this share of the time (1/n). */
const ENTRIES_SHARE = 20;
/** A line of an epoll instance's fdinfo: descriptor, events, data, inode (hex). */
const ENTRY =
  /^tfd:\s+(\d+)\s+events:\s+([0-9a-f]+)\s+data:\s+([0-9a-f]+)\s+pos:\S+\s+ino:([0-9a-f]+)/gm;

/** How another epoll instance (the runtime's) has a socket: its fdinfo line. */
export interface RuntimeEntry {
  readonly ino: number;
  readonly events: number;
  readonly data: bigint;
}

/**
 * The entries of another epoll instance (the runtime's), read from its
 * fdinfo, to put a socket taken off it back as it was (Poller.restore).
 */
export class EpollEntries {
  readonly #ep: number;
  readonly #entries = new Map<number, RuntimeEntry>();
  #readAt = -Infinity;
  #every = 0;

  constructor(ep: number) {
    this.#ep = ep;
  }

  /**
   * How the instance has `fd`: from the last read of its fdinfo if that
   * saw this very socket (same inode), else from a new read, at most
   * 1/ENTRIES_SHARE of the time (null: not now); undefined when it is not there.
   */
  of(fd: number, now: number): RuntimeEntry | undefined | null {
    let ino: number;
    try {
      const link = Deno.readLinkSync(`/proc/self/fd/${fd}`);
      ino = Number(link.slice(link.indexOf("[") + 1, -1));
    } catch {
      return undefined;
    }
    const known = this.#entries.get(fd);
    if (known?.ino === ino) return known;
    if (now - this.#readAt < this.#every) return null;
    this.#entries.clear();
    try {
      const info = Deno.readTextFileSync(`/proc/self/fdinfo/${this.#ep}`);
      for (const m of info.matchAll(ENTRY)) {
        const entry = {
          events: parseInt(m[2], 16),
          data: BigInt(`0x${m[3]}`),
          ino: parseInt(m[4], 16),
        };
        this.#entries.set(Number(m[1]), entry);
      }
    } catch {
      // No fdinfo: nothing is found.
    }
    this.#readAt = now;
    this.#every = ENTRIES_SHARE * (performance.now() - now);
    const entry = this.#entries.get(fd);
    return entry?.ino === ino ? entry : undefined;
  }

  /** `fd` is back on the instance (its line may change). */
  forget(fd: number): void {
    this.#entries.delete(fd);
  }
}
