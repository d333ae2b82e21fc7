/**
 * One client connection through the L4 mode's proxy (proxy.ts), and the
 * hooks of its dial and splice.
 */
import type { DistError, SourceEntry } from "../../../wire/mod.ts";
import type { Backend } from "../backends.ts";
import type { BackendConn, ClientConn, DialHooks, Spliced } from "./io.ts";
import type { TcpProxy } from "./proxy.ts";
import type { Ended, IdleClock, SpliceHooks } from "./splice.ts";

/**
 * One client connection through the proxy: its entry among the sources,
 * the backend it was given and its splice. It is the dial's, the splice's
 * and its source entry's hooks (one object a connection, no closures).
 */
export class Passage implements DialHooks, SpliceHooks {
  entry: SourceEntry | undefined;
  backend: Backend | undefined;
  /** When its current dial started. */
  dialing = 0;
  /** Backends that refused it (made at the first refusal). */
  tried: Set<Backend> | undefined;
  splice: Spliced | undefined;
  /** Its place among the proxy's spliced connections (-1: not there). */
  at = -1;
  /** It was closed to make room. */
  evicted = false;
  /** Its splice ended and its backend was given back. */
  released = false;
  /** It no longer counts among its source's. */
  left = false;

  constructor(readonly proxy: TcpProxy, readonly client: ClientConn) {}

  get clock(): IdleClock {
    return this.proxy.clock;
  }

  dialed(conn: BackendConn): void {
    this.proxy.dialed(this, conn);
  }

  failed(err: unknown): void {
    this.proxy.failed(this, err);
  }

  /** Closed to make room for another connection (sources.ts; `spoke`: it sent a byte). */
  closeForRoom(why: DistError, spoke: boolean): void {
    this.proxy.evict(this, why, spoke);
  }

  spoke(): void {
    this.entry!.settled();
  }

  ended(ended: Ended): void {
    this.proxy.ended(this, ended);
  }
}
