/**
 * The L4 mode's panic dial (proxy.ts): with no backend up, a client is
 * tried on every backend that is out, all at once, each for at most
 * {@link PANIC_CONNECT_TIMEOUT_MS}, and goes to the first that connects;
 * the others' connections are closed as they come. A rolling restart takes
 * each backend out by one refused connect, and they accept again before
 * `--rise` checks bring them back: closing the client was a certain
 * failure (hostile44c H-C2; Envoy's panic mode does as much). Dialed one
 * after another with the connect timeout (3 s), backends that drop SYNs (a
 * host gone, a firewall, a full listen queue) made each client wait 3 s a
 * backend before it was closed, holding its descriptor (review44 R7: 6 s
 * with two). A failed panic dial is counted but not judged: its backend is
 * out already.
 */
import type { Backend } from "../backends.ts";
import type { BackendConn, DialHooks } from "./io.ts";

/** How long a panic dial may take (a connect across a continent takes less than half of it). */
export const PANIC_CONNECT_TIMEOUT_MS = 500;

/** What a race tells the proxy. */
export interface PanicHost<P> {
  /** Whether `p` still wants a backend (not closed to make room meanwhile, not stopping). */
  wants(p: P): boolean;
  /** `backend`'s dial for `p`, started at `startedAt`, connected first: `p` goes to it. */
  won(p: P, backend: Backend, conn: BackendConn, startedAt: number): void;
  /** A dial not taken: its backend's count and descriptor given back, `conn` (if made) closed. */
  dropped(backend: Backend, conn: BackendConn | undefined, err: unknown): void;
  /** Every dial of `p`'s race failed, or `p` no longer wanted one: `tried` are their backends. */
  none(p: P, tried: readonly Backend[]): void;
}

/** The dials of one client's panic, each backend's hooks made by {@link dial}. */
export class PanicRace<P> {
  #left: number;
  won = false;
  readonly tried: Backend[] = [];

  /** @param count how many dials the race will start (or fewer, once it is won) */
  constructor(readonly host: PanicHost<P>, readonly p: P, count: number) {
    this.#left = count;
  }

  /** The hooks of `backend`'s dial. */
  dial(backend: Backend): DialHooks {
    this.tried.push(backend);
    return new PanicDial(this, backend);
  }

  /** One dial is done: connected (`conn`) or failed (`err`). */
  settle(dial: PanicDial<P>, conn: BackendConn | undefined, err: unknown): void {
    this.#left--;
    if (conn !== undefined && !this.won && this.host.wants(this.p)) {
      this.won = true;
      return this.host.won(this.p, dial.backend, conn, dial.at);
    }
    this.host.dropped(dial.backend, conn, err);
    if (!this.won && this.#left === 0) this.host.none(this.p, this.tried);
  }
}

class PanicDial<P> implements DialHooks {
  readonly at = performance.now();
  constructor(readonly race: PanicRace<P>, readonly backend: Backend) {}

  dialed(conn: BackendConn): void {
    this.race.settle(this, conn, undefined);
  }

  failed(err: unknown): void {
    this.race.settle(this, undefined, err);
  }
}
