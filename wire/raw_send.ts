/**
 * Writes to Deno's TCP sockets with one synchronous libc `send` (Linux,
 * FFI: wire/raw_tcp.ts) instead of the runtime's write op, for a process
 * that turns it on ({@link useRawSend}: the balancer). A write through the
 * op costs a promise, the op's dispatch and a later turn of the event loop
 * to learn it is done; one through `send` is the system call alone. What
 * `send` does not take at once (a full send buffer) goes on through the op.
 *
 * Deno does not give a socket's descriptor, so it is found by the ends
 * of the connection (both addresses and ports): the process's descriptors (/proc/self/fd) are read once
 * for all the connections not matched yet, each socket's ends taken with
 * getsockname/getpeername, and the one found checked again before use.
 * Only connections that keep writing look theirs up (see
 * {@link RawSend.fdOf}); one opened since the last scan waits for the next
 * (at most SCAN_EVERY_MS, or the longer time after a long scan), and a scan
 * that does not find it leaves it on the op for good.
 */
import { openRawTcp, type RawTcp } from "./raw_tcp.ts";
import { useRawReads } from "./raw_reads.ts";

/** Flushes a connection makes through the op before it looks its descriptor up. */
const LOOKUP_AFTER = 8;
/** Least time between two reads of /proc/self/fd (ms). */
const SCAN_EVERY_MS = 250;
/**
 * And at least this many times the last one's length: with tens of
 * thousands of descriptors a scan takes tens of ms, and connections that
 * come and go could otherwise have one every 250 ms (at most 5 % of the time).
 */
const SCAN_SHARE = 20;
/** A connection given up on: it writes through the op. */
export const NO_FD = -2;

export class RawSend {
  readonly #raw: RawTcp;
  /** Descriptors by their ends, from the last scan. */
  #byEnds = new Map<string, number>();
  #scannedAt = -Infinity;
  /** Time between scans (ms): SCAN_EVERY_MS, or more after a long one. */
  #every = SCAN_EVERY_MS;

  constructor(raw: RawTcp) {
    this.#raw = raw;
  }

  /**
   * The descriptor of `conn` (a plain TCP connection of Deno's), -1 not
   * yet (ask again on a later flush), or {@link NO_FD}. `flushes`: how many
   * times the connection has written so far.
   */
  fdOf(conn: Deno.Conn, flushes: number): number {
    if (flushes < LOOKUP_AFTER) return -1;
    if (conn.constructor.name !== "TcpConn") return NO_FD;
    const local = conn.localAddr, remote = conn.remoteAddr;
    if (local.transport !== "tcp" || remote.transport !== "tcp") return NO_FD;
    const ends = `${local.hostname}:${local.port} ${remote.hostname}:${remote.port}`;
    let fd = this.#byEnds.get(ends);
    if (fd === undefined) {
      const now = performance.now();
      // Opened since the last scan: the next one finds it, however much it
      // writes meanwhile (a connection that wrote 512 times before it was
      // given up on for good, and read and wrote through the ops from then on).
      if (now - this.#scannedAt < this.#every) return -1;
      this.#scan(now);
      fd = this.#byEnds.get(ends);
      if (fd === undefined) return NO_FD;
    }
    this.#byEnds.delete(ends);
    // The scan may be old: the descriptor is taken only if it still has these ends.
    return fd !== NO_FD && this.#raw.ends(fd) === ends ? fd : NO_FD;
  }

  #scan(now: number): void {
    this.#scannedAt = now;
    this.#byEnds.clear();
    try {
      for (const entry of Deno.readDirSync("/proc/self/fd")) {
        const fd = Number(entry.name);
        const ends = this.#raw.ends(fd);
        // Ends seen twice (sockets of two namespaces?) name no descriptor: NO_FD.
        if (ends !== undefined) this.#byEnds.set(ends, this.#byEnds.has(ends) ? NO_FD : fd);
      }
    } catch {
      // No /proc: every connection stays on the op.
    }
    this.#every = Math.max(SCAN_EVERY_MS, SCAN_SHARE * (performance.now() - now));
  }

  /** Writes `buf`'s first `length` bytes: the count taken, or -errno (-11: none now). */
  send(fd: number, buf: Uint8Array, length: number): number {
    return this.#raw.sendNow(fd, buf, length);
  }
}

/** The process's sender, once {@link useRawSend} turned it on. */
export let rawSend: RawSend | undefined;

/**
 * Writes this process's TCP connections with `send` from now on where it
 * can (libc loadable, FFI allowed; `DIST_TCP_IO=runtime` keeps the op).
 * @returns whether it is on
 */
export function useRawSend(): boolean {
  const raw = openRawTcp();
  if (raw !== undefined && rawSend === undefined) {
    rawSend = new RawSend(raw);
    useRawReads(raw);
  }
  return rawSend !== undefined;
}
