/**
 * What the shell counts for every listening role (never inside a handler):
 * requests by method class and code and their latency, counted by each
 * Peer where it sends the answer (counter()); notifications at the dispatch
 * point; connections and bytes at the `onPeer` seam.
 * A method's class is its contract's service (`broker`, `binder`, `sys`,
 * `ops` …), `forwarded` for what a balancer passes on, `unknown` otherwise;
 * codes are the fixed DistError set, so the label sets stay bounded.
 */
import {
  type Contract,
  DistError,
  ERROR_CODES,
  type NotificationHandler,
  type Peer,
  type RequestCounter,
  type RequestTally,
} from "../wire/mod.ts";
import {
  type Cell,
  type CellFamily,
  type HistogramCell,
  type HistogramFamily,
  type Registry,
  Sampler,
} from "./metrics.ts";

const KNOWN_CODES: ReadonlySet<string> = new Set(ERROR_CODES);

/**
 * The cells of one method class, made once; the tally a Peer keeps per
 * method, and the sampler of which of its requests are timed (one object:
 * `start()` is a decrement with no call in between).
 */
class ClassCells extends Sampler implements RequestTally {
  readonly ok: Cell;
  readonly latency: HistogramCell;
  readonly notifications: Cell;
  readonly #requests: CellFamily;
  readonly #name: string;
  readonly #codes = new Map<string, Cell>();
  constructor(
    name: string,
    families: { requests: CellFamily; latency: HistogramFamily; notes: CellFamily },
  ) {
    super();
    const { requests, latency, notes } = families;
    this.#name = name;
    this.#requests = requests;
    this.ok = requests.cell({ class: name, code: "OK" });
    this.latency = latency.cell({ class: name });
    this.notifications = notes.cell({ class: name });
  }
  start(): number {
    const t0 = this.take();
    return t0 === 0 ? -1 : t0; // -1: not timed
  }
  failed(err: unknown, t0: number): void {
    if (t0 >= 0) this.latency.observe((performance.now() - t0) / 1000);
    const code = err instanceof DistError && KNOWN_CODES.has(err.code) ? err.code : "INTERNAL";
    let cell = this.#codes.get(code);
    if (cell === undefined) {
      this.#codes.set(code, cell = this.#requests.cell({ class: this.#name, code }));
    }
    cell.value++;
  }
  done(t0: number): void {
    if (t0 >= 0) this.latency.observe((performance.now() - t0) / 1000);
    this.ok.value++;
  }
}

/** Request, connection and byte metrics of one listening process (all its ports). */
export class RpcMetrics {
  readonly #byMethod = new Map<string, ClassCells>();
  readonly #other: ClassCells;
  readonly #classes = new Map<string, ClassCells>();
  readonly #requests: CellFamily;
  readonly #latency: HistogramFamily;
  readonly #notes: CellFamily;
  readonly #opened: Cell;
  readonly #closed: CellFamily;
  readonly #live = new Set<Peer>();
  readonly #registry: Registry;
  #closedIn = 0;
  #closedOut = 0;

  constructor(registry: Registry) {
    this.#registry = registry;
    this.#requests = registry.cells(
      "counter",
      "dist_requests_total",
      "Requests answered, by method class and code (OK or the error's code)",
    );
    this.#latency = registry.histogram(
      "dist_request_duration_seconds",
      "Time from a request's dispatch to its answer, by method class (a sample: every request while they come more than 2 ms apart in a class, one per 2 to 4 ms above that; dist_requests_total counts every one)",
    );
    this.#notes = registry.cells(
      "counter",
      "dist_notifications_total",
      "Notifications taken through dispatch, by method class (fast paths not included)",
    );
    this.#opened = registry.cells(
      "counter",
      "dist_connections_opened_total",
      "Connections accepted (after their handshake)",
    ).cell({});
    this.#closed = registry.cells(
      "counter",
      "dist_connections_closed_total",
      "Connections closed, by reason",
    );
    registry.read("gauge", "dist_connections", "Connections open now", () => this.#live.size);
    registry.read("counter", "dist_received_bytes_total", "Bytes read from connections", () => {
      let n = this.#closedIn;
      for (const p of this.#live) n += p.conn.bytesIn;
      return n;
    });
    registry.read("counter", "dist_sent_bytes_total", "Bytes written to connections", () => {
      let n = this.#closedOut;
      for (const p of this.#live) n += p.conn.bytesOut;
      return n;
    });
    this.#other = this.#cells("unknown");
  }

  #cells(name: string): ClassCells {
    let cells = this.#classes.get(name);
    if (cells === undefined) {
      cells = this.#registry.track(
        new ClassCells(name, {
          requests: this.#requests,
          latency: this.#latency,
          notes: this.#notes,
        }),
      );
      this.#classes.set(name, cells);
    }
    return cells;
  }

  /** Learns the method names of `contracts` (and their aliases) and their class. */
  learn(contracts: readonly Contract[]): void {
    for (const c of contracts) {
      const cells = this.#cells(c.service);
      for (const m of Object.values(c.methods)) this.#byMethod.set(m.name, cells);
      for (const alias of Object.keys(c.aliases ?? {})) this.#byMethod.set(alias, cells);
    }
  }

  /**
   * What a port's Peers count every request they answer with (wire's
   * RequestCounter: at the point the answer is sent, no wrapper around the
   * handler), timing a sample of each class ({@link Sampler}: two clock
   * reads cost more than the rest of the counting, 0.1–0.2 µs each).
   * @param forwards the port hands methods no contract owns to a fallback (the balancer)
   */
  counter(forwards: boolean): RequestCounter {
    const byMethod = this.#byMethod;
    const rest = forwards ? this.#cells("forwarded") : this.#other;
    return { of: (method) => byMethod.get(method) ?? rest };
  }

  /** Counts the notifications `handler` takes. */
  wrapNotification(handler: NotificationHandler): NotificationHandler {
    const byMethod = this.#byMethod;
    const other = this.#other;
    return (method, params, peer) => {
      (byMethod.get(method) ?? other).notifications.value++;
      return handler(method, params, peer);
    };
  }

  /** Follows a connection from its handshake to its close (its bytes stay counted). */
  peer(peer: Peer): void {
    this.#opened.value++;
    this.#live.add(peer);
    peer.closed.then((reason) => {
      this.#live.delete(peer);
      this.#closedIn += peer.conn.bytesIn;
      this.#closedOut += peer.conn.bytesOut;
      this.#closed.cell({ reason: String(reason) }).value++;
    });
  }
}
