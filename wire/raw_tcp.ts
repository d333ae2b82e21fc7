/**
 * TCP sockets through libc (Linux, x86_64 and aarch64), for the balancer's
 * L4 mode: non-blocking sockets, `epoll` for readiness, `recv`/`send` into
 * buffers the caller holds. Each call is one system call and no runtime
 * operation (no promise, no op dispatch): a proxied HTTP request on a new
 * connection cost 141 µs of CPU through Deno's sockets against HAProxy's 74
 * (stop 38), most of it the runtime's cost per socket operation.
 *
 * Every call returns a count or descriptor, or a negative errno (`-11` is
 * EAGAIN); {@link RawTcp.describe} words one as Rust's io::Error does
 * (`Connection refused (os error 111)`), so messages read as Deno's.
 * {@link openRawTcp} is undefined where this cannot work (another OS or
 * architecture, libc not loadable, FFI not permitted, `DIST_TCP_IO=runtime`).
 */
import { type Libc as Calls, libc } from "./libc.ts";
import { Poller } from "./raw_epoll.ts";

export { EPOLLERR, EPOLLHUP, EPOLLIN, EPOLLOUT, EPOLLRDHUP, Poller } from "./raw_epoll.ts";
/** The socket calls, for raw_epoll.ts. */
export type Libc = Calls<"sockets">;

/** errno values used by callers. */
export const EAGAIN = 11;
export const EINPROGRESS = 115;
export const ENOTCONN = 107;
const EALREADY = 114;
const EISCONN = 106;

const AF_INET = 2;
const AF_INET6 = 10;
const SOCK_STREAM = 1;
const SOCK_NONBLOCK = 0x800;
const SOCK_CLOEXEC = 0x80000;
const SOL_SOCKET = 1;
const SO_REUSEADDR = 2;
const SO_ERROR = 4;
const SO_LINGER = 13;
const IPPROTO_TCP = 6;
const TCP_NODELAY = 1;
const MSG_NOSIGNAL = 0x4000;
const MSG_MORE = 0x8000;
const MSG_DONTWAIT = 0x40;
const SHUT_WR = 1;
const EFD_NONBLOCK = 0x800;
const EFD_CLOEXEC = 0x80000;
const EPOLL_CTL_DEL = 2;
const CLOCK_MONOTONIC = 1;
/** The longest length {@link sizeT} keeps. */
const MAX_CACHED = 65_536;

/** Lengths up to 64 KiB as BigInts, each made once. */
const lengths: bigint[] = new Array(MAX_CACHED + 1);

/**
 * A `size_t` argument. FFI's fast path (~20 ns a call) takes a BigInt for
 * it; a number takes the slow one (~100 ns), a new BigInt allocates. (A
 * `u32` parameter would take a number fast, but leaves the register's upper
 * half to chance; `recvmsg` with the length in a `msghdr`, used before, costs
 * the kernel a copy of the header and the iovec each call: ~0.15 µs.)
 */
function sizeT(n: number): bigint {
  return n <= MAX_CACHED ? (lengths[n] ??= BigInt(n)) : BigInt(n);
}

/** An IP address as a socket address (`sockaddr_in` or `sockaddr_in6`). */
export interface SocketAddress {
  readonly bytes: Uint8Array;
  readonly family: number;
}

/** A client's address, read at accept. */
export interface Peer {
  host: string;
  port: number;
}

/** The libc socket calls, or undefined where they cannot be used here (see the module). */
export function openRawTcp(): RawTcp | undefined {
  if (Deno.build.os !== "linux") return undefined;
  if (Deno.build.arch !== "x86_64" && Deno.build.arch !== "aarch64") return undefined;
  if (Deno.env.get("DIST_TCP_IO") === "runtime") return undefined;
  // Without --allow-ffi (asked, never prompted for) or libc: Deno's sockets.
  const c = libc("sockets");
  return c === null ? undefined : new RawTcp(c);
}

const encoder = new TextEncoder();

export class RawTcp {
  readonly #c: Libc;
  readonly #errno: Deno.UnsafePointerView;
  readonly #int = new Int32Array(1);
  readonly #intBytes = new Uint8Array(this.#int.buffer);
  /** `struct linger`: on, seconds. */
  readonly #linger = new Int32Array(2);
  readonly #lingerBytes = new Uint8Array(this.#linger.buffer);
  readonly #len = new Uint32Array(1);
  readonly #lenBytes = new Uint8Array(this.#len.buffer);
  readonly #peer = new Uint8Array(128);
  readonly #peerView = new DataView(this.#peer.buffer);
  readonly #text = new Uint8Array(64);
  readonly #counter = new BigUint64Array(1);
  readonly #counterBytes = new Uint8Array(this.#counter.buffer);
  /** `struct itimerspec`: interval (s, ns), first expiry (s, ns). */
  readonly #spec = new BigInt64Array(4);
  readonly #specBytes = new Uint8Array(this.#spec.buffer);
  readonly #messages = new Map<number, string>();
  /** IPv4 client addresses as text, by their 32 bits. */
  readonly #hosts = new Map<number, string>();

  constructor(libc: Libc) {
    this.#c = libc;
    this.#errno = new Deno.UnsafePointerView(libc.__errno_location()!);
  }

  /** The last call's errno, negated (read right after the failed call, on this thread). */
  #fail(): number {
    return -this.#errno.getInt32();
  }

  /** `Connection refused (os error 111)` for -111 or 111. */
  describe(errno: number): string {
    const n = Math.abs(errno);
    let text = this.#messages.get(n);
    if (text === undefined) {
      const p = this.#c.strerror(n);
      const what = p === null ? "Unknown error" : Deno.UnsafePointerView.getCString(p);
      text = `${what} (os error ${n})`;
      this.#messages.set(n, text);
    }
    return text;
  }

  /** An IP literal (v4 or v6) as a socket address; undefined for a name. */
  address(host: string, port: number): SocketAddress | undefined {
    const text = encoder.encode(host.replace(/^\[|\]$/g, "") + "\0");
    const v4 = new Uint8Array(16);
    if (this.#c.inet_pton(AF_INET, text, v4.subarray(4)) === 1) {
      const view = new DataView(v4.buffer);
      view.setUint16(0, AF_INET, true);
      view.setUint16(2, port);
      return { bytes: v4, family: AF_INET };
    }
    const v6 = new Uint8Array(28);
    if (this.#c.inet_pton(AF_INET6, text, v6.subarray(8)) === 1) {
      const view = new DataView(v6.buffer);
      view.setUint16(0, AF_INET6, true);
      view.setUint16(2, port);
      return { bytes: v6, family: AF_INET6 };
    }
    return undefined;
  }

  /**
   * A listening socket on `address` (SO_REUSEADDR, as Deno's; TCP_NODELAY,
   * which the connections it accepts inherit): its descriptor and port, or -errno.
   */
  listen(address: SocketAddress, backlog: number): { fd: number; port: number } | number {
    const fd = this.#c.socket(address.family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return this.#fail();
    this.#int[0] = 1;
    this.#c.setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, this.#intBytes, 4);
    this.noDelay(fd);
    // IPV6_V6ONLY left to the system, as Deno leaves it: "::" takes IPv4 too where it does.
    if (
      this.#c.bind(fd, address.bytes, address.bytes.length) < 0 ||
      this.#c.listen(fd, backlog) < 0
    ) {
      const err = this.#fail();
      this.#c.close(fd);
      return err;
    }
    this.#len[0] = this.#peer.length;
    this.#c.getsockname(fd, this.#peer, this.#lenBytes);
    return { fd, port: this.#peerView.getUint16(2) };
  }

  /**
   * Accepts one connection (non-blocking; TCP_NODELAY as its listener's,
   * which {@link listen} set: Linux copies it to each accepted socket): its
   * descriptor, or -errno.
   */
  accept(fd: number, peer: Peer): number {
    this.#len[0] = this.#peer.length;
    const conn = this.#c.accept4(fd, this.#peer, this.#lenBytes, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (conn < 0) return this.#fail();
    const family = this.#peerView.getUint16(0, true);
    peer.port = this.#peerView.getUint16(2);
    if (family === AF_INET) {
      // The same few client addresses, mostly: each one's text is made once.
      const ip = this.#peerView.getUint32(4);
      let host = this.#hosts.get(ip);
      if (host === undefined) {
        if (this.#hosts.size >= 1024) this.#hosts.clear();
        host = `${ip >>> 24}.${(ip >>> 16) & 255}.${(ip >>> 8) & 255}.${ip & 255}`;
        this.#hosts.set(ip, host);
      }
      peer.host = host;
      return conn;
    }
    const p = this.#c.inet_ntop(
      AF_INET6,
      this.#peer.subarray(8, 24),
      this.#text,
      this.#text.length,
    );
    peer.host = p === null ? "" : Deno.UnsafePointerView.getCString(p);
    return conn;
  }

  /**
   * Starts a connect to `address` (non-blocking, TCP_NODELAY): the socket's
   * descriptor (connected, or connecting: writable once done, then see
   * {@link socketError}), or -errno.
   */
  connect(address: SocketAddress): number {
    const fd = this.#c.socket(address.family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return this.#fail();
    this.noDelay(fd);
    if (this.#c.connect(fd, address.bytes, address.bytes.length) < 0) {
      const err = this.#fail();
      if (err !== -EINPROGRESS) {
        this.#c.close(fd);
        return err;
      }
    }
    return fd;
  }

  /**
   * Whether a connect {@link connect} started is done: 1 connected, 0 not
   * yet, or -errno (refused…). Over loopback it often is by the time
   * `connect` returns, which saves waiting for the socket to be writable.
   */
  connected(fd: number, address: SocketAddress): number {
    if (this.#c.connect(fd, address.bytes, address.bytes.length) === 0) return 1;
    const err = this.#fail();
    if (err === -EISCONN) return 1;
    return err === -EALREADY || err === -EINPROGRESS ? 0 : err;
  }

  /** A socket's pending error (SO_ERROR), negated; 0 for none. */
  socketError(fd: number): number {
    this.#int[0] = 0;
    this.#len[0] = 4;
    if (this.#c.getsockopt(fd, SOL_SOCKET, SO_ERROR, this.#intBytes, this.#lenBytes) < 0) {
      return this.#fail();
    }
    return -this.#int[0];
  }

  noDelay(fd: number): void {
    this.#int[0] = 1;
    this.#c.setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, this.#intBytes, 4);
  }

  /** Writes the first `length` bytes of `buf` (no SIGPIPE): the count taken, or -errno. */
  send(fd: number, buf: Uint8Array, length = buf.length): number {
    const n = this.#c.send(fd, buf, sizeT(length), MSG_NOSIGNAL);
    return n < 0 ? this.#fail() : n;
  }

  /** {@link send} that never blocks, whatever the socket's mode (MSG_DONTWAIT). */
  sendNow(fd: number, buf: Uint8Array, length: number): number {
    const n = this.#c.send(fd, buf, sizeT(length), MSG_NOSIGNAL | MSG_DONTWAIT);
    return n < 0 ? this.#fail() : n;
  }

  /**
   * A connected TCP socket's ends as `LOCALHOST:LOCALPORT HOST:PORT` (hosts
   * as inet_ntop writes them), or undefined for a descriptor that is not one.
   * Both addresses count: on a wildcard listener two clients behind one NAT
   * may reach two of its addresses from the same address and port.
   */
  ends(fd: number): string | undefined {
    this.#len[0] = this.#peer.length;
    if (this.#c.getsockname(fd, this.#peer, this.#lenBytes) < 0) return undefined;
    const family = this.#peerView.getUint16(0, true);
    if (family !== AF_INET && family !== AF_INET6) return undefined;
    const local = this.#address();
    this.#len[0] = this.#peer.length;
    if (local === undefined || this.#c.getpeername(fd, this.#peer, this.#lenBytes) < 0) return;
    const peer = this.#address();
    return peer === undefined ? undefined : `${local} ${peer}`;
  }

  /** The address in the peer buffer as `HOST:PORT`, or undefined. */
  #address(): string | undefined {
    const v4 = this.#peerView.getUint16(0, true) === AF_INET;
    const p = this.#c.inet_ntop(
      v4 ? AF_INET : AF_INET6,
      this.#peer.subarray(v4 ? 4 : 8, v4 ? 8 : 24),
      this.#text,
      this.#text.length,
    );
    if (p === null) return undefined;
    return `${Deno.UnsafePointerView.getCString(p)}:${this.#peerView.getUint16(2)}`;
  }

  /** A buffer {@link recvInto} and {@link sendFrom} read into and write from. */
  fixedBuffer(size: number): FixedBuffer {
    return new FixedBuffer(size);
  }

  /** Reads into `buf` (all of it): the count (0: end of stream), or -errno. */
  recvInto(fd: number, buf: FixedBuffer): number {
    const n = this.#c.recv(fd, buf.bytes, buf.size, 0);
    return n < 0 ? this.#fail() : n;
  }

  /**
   * Writes the first `length` bytes of `buf` (no SIGPIPE): the count taken,
   * or -errno. `more`: a shutdown or close of `fd` follows at once, which
   * sends them (MSG_MORE: the kernel holds them until then, and the FIN
   * goes out in the same segment).
   */
  sendFrom(fd: number, buf: FixedBuffer, length: number, more = false): number {
    const flags = more ? MSG_NOSIGNAL | MSG_MORE : MSG_NOSIGNAL;
    const n = this.#c.send(fd, buf.bytes, sizeT(Math.min(length, buf.bytes.length)), flags);
    return n < 0 ? this.#fail() : n;
  }

  /** Shuts the write half down: 0, or -errno. */
  shutdownWrite(fd: number): number {
    return this.#c.shutdown(fd, SHUT_WR) < 0 ? this.#fail() : 0;
  }

  close(fd: number): void {
    this.#c.close(fd);
  }

  /**
   * Closes `fd` with a reset (RST, SO_LINGER 0): its peer sees the
   * connection aborted, not ended, and what was not sent yet is dropped.
   */
  abort(fd: number): void {
    this.#linger[0] = 1;
    this.#linger[1] = 0;
    this.#c.setsockopt(fd, SOL_SOCKET, SO_LINGER, this.#lingerBytes, 8);
    this.#c.close(fd);
  }

  /**
   * An eventfd (non-blocking): readable once {@link signal}led, until
   * {@link drain}ed. Wakes a wait on another thread at once.
   */
  eventFd(): number {
    const fd = this.#c.eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (fd < 0) throw new Error(`eventfd: ${this.describe(this.#fail())}`);
    return fd;
  }

  /**
   * A timer (non-blocking timerfd, monotonic clock): readable each time it
   * fires (see {@link every}) until {@link drain}ed.
   */
  timerFd(): number {
    const fd = this.#c.timerfd_create(CLOCK_MONOTONIC, EFD_NONBLOCK | EFD_CLOEXEC);
    if (fd < 0) throw new Error(`timerfd_create: ${this.describe(this.#fail())}`);
    return fd;
  }

  /** Makes a timer fire every `ms` from now on (0: never again). */
  every(fd: number, ms: number): void {
    const ns = BigInt(Math.round(ms * 1e6));
    const s = ns / 1_000_000_000n, rest = ns % 1_000_000_000n;
    this.#spec[0] = this.#spec[2] = s;
    this.#spec[1] = this.#spec[3] = rest;
    this.#c.timerfd_settime(fd, 0, this.#specBytes, null);
  }

  /** Makes an eventfd readable. */
  signal(fd: number): void {
    this.#counter[0] = 1n;
    this.#c.write(fd, this.#counterBytes, sizeT(8));
  }

  /** Makes an eventfd (or a timerfd) unreadable again. */
  drain(fd: number): void {
    this.#c.read(fd, this.#counterBytes, sizeT(8));
  }

  /**
   * Takes `fd` off the epoll instance `ep` (another's: the runtime's, see
   * raw_reads.ts): whether it was on it.
   */
  forget(ep: number, fd: number): boolean {
    return this.#c.epoll_ctl(ep, EPOLL_CTL_DEL, fd, this.#peer) === 0;
  }

  /** A new epoll instance. */
  poller(maxEvents: number): Poller {
    const ep = this.#c.epoll_create1(SOCK_CLOEXEC);
    if (ep < 0) throw new Error(`epoll_create1: ${this.describe(this.#fail())}`);
    return new Poller(this.#c, ep, maxEvents);
  }
}

/** A buffer sockets are read into and written from, with its size as a `size_t`. */
export class FixedBuffer {
  readonly bytes: Uint8Array;
  /** Its length, for recv. */
  readonly size: bigint;

  constructor(size: number) {
    this.bytes = new Uint8Array(new ArrayBuffer(size));
    this.size = BigInt(size);
  }
}
