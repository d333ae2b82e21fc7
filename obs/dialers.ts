/**
 * Metrics of the roles that dial (client, producer, consumer, worker), which
 * have no dispatch of their own for the shell to count at:
 *
 * - {@link countCalls}: the client's requests by method class and code, and
 *   their round-trip time, counted on the connections its modes use (every
 *   mode asks through them);
 * - {@link dialerCounters}: the producer's publishes, the consumer's
 *   messages and the worker's tasks, read at scrape time from the counters
 *   the roles keep for their reports (no cost per message).
 */
import { DistError, ERROR_CODES } from "../wire/mod.ts";
// Data only: the method names of each class (the library's contracts).
import { balancer, binder, broker, ops, sys, worker } from "../clients/contracts/mod.ts";
import type { Cell, CellFamily, HistogramCell, HistogramFamily, Registry } from "./metrics.ts";

const KNOWN_CODES: ReadonlySet<string> = new Set(ERROR_CODES);

/** Each method of dist's contracts (and their aliases) to its class; any other is `other`. */
const CLASSES: ReadonlyMap<string, string> = new Map(
  [sys, ops, binder, broker, balancer, worker].flatMap((c) => [
    ...Object.values(c.methods).map((m) => [m.name, c.service] as const),
    ...Object.keys(c.aliases ?? {}).map((a) => [a, c.service] as const),
  ]),
);

/** What the client's modes ask through (roles/client's Caller). */
export interface CallerLike {
  exchange(method: string, params?: unknown, options?: unknown): Promise<unknown>;
  readonly canCall: boolean;
  readonly remote?: unknown;
  readonly pendingCalls?: number;
  close(): void;
}

class ClassCells {
  readonly ok: Cell;
  readonly latency: HistogramCell;
  readonly #codes = new Map<string, Cell>();
  constructor(readonly name: string, readonly requests: CellFamily, latency: HistogramFamily) {
    this.ok = requests.cell({ class: name, code: "OK" });
    this.latency = latency.cell({ class: name });
  }
  failed(err: unknown): void {
    const code = err instanceof DistError && KNOWN_CODES.has(err.code) ? err.code : "INTERNAL";
    let cell = this.#codes.get(code);
    if (cell === undefined) {
      this.#codes.set(code, cell = this.requests.cell({ class: this.name, code }));
    }
    cell.value++;
  }
}

/** The client's request cells, by class. */
class CallMetrics {
  readonly #classes = new Map<string, ClassCells>();
  readonly #requests: CellFamily;
  readonly #latency: HistogramFamily;
  constructor(registry: Registry) {
    this.#requests = registry.cells(
      "counter",
      "dist_client_requests_total",
      "Requests sent and answered, by method class and code (OK or the error's code)",
    );
    this.#latency = registry.histogram(
      "dist_client_request_duration_seconds",
      "Time from a request's sending to its answer, by method class",
    );
  }
  classOf(method: string): ClassCells {
    const name = CLASSES.get(method) ?? "other";
    let cells = this.#classes.get(name);
    if (cells === undefined) {
      this.#classes.set(name, cells = new ClassCells(name, this.#requests, this.#latency));
    }
    return cells;
  }
}

/** A caller whose requests are counted; everything else is the wrapped one's. */
class CountedCaller implements CallerLike {
  readonly #inner: CallerLike;
  readonly #metrics: CallMetrics;
  constructor(inner: CallerLike, metrics: CallMetrics) {
    this.#inner = inner;
    this.#metrics = metrics;
  }
  exchange(method: string, params?: unknown, options?: unknown): Promise<unknown> {
    const cells = this.#metrics.classOf(method);
    const t0 = performance.now();
    return this.#inner.exchange(method, params, options).then((r) => {
      cells.latency.observe((performance.now() - t0) / 1000);
      cells.ok.value++;
      return r;
    }, (err) => {
      cells.latency.observe((performance.now() - t0) / 1000);
      cells.failed(err);
      throw err;
    });
  }
  get canCall(): boolean {
    return this.#inner.canCall;
  }
  get remote(): unknown {
    return this.#inner.remote;
  }
  get pendingCalls(): number | undefined {
    return this.#inner.pendingCalls;
  }
  close(): void {
    this.#inner.close();
  }
}

/**
 * `open`, with every caller it opens counted in `registry`'s client
 * metrics; `open` itself when there is no registry (no `--metrics`).
 */
export function countCalls<T extends CallerLike>(
  registry: Registry | undefined,
  open: () => Promise<T>,
): () => Promise<T> {
  if (registry === undefined) return open;
  const metrics = new CallMetrics(registry);
  // The wrapper has exactly the caller's members (CallerLike is roles/client's Caller).
  return async () => new CountedCaller(await open(), metrics) as unknown as T;
}

/** Counters a dialing role keeps for its report, read at scrape time. */
export interface DialerCounters {
  /** producer: messages published, and those that failed. */
  published?: () => number;
  publishFailed?: () => number;
  /** consumer: messages received. */
  received?: () => number;
  /** worker: tasks answered, those answered with an error, registrations made. */
  tasks?: () => number;
  taskErrors?: () => number;
  registrations?: () => number;
}

/** Declares the metrics of the counters a dialing role gives. */
export function dialerCounters(registry: Registry | undefined, counters: DialerCounters): void {
  if (registry === undefined) return;
  const c = counters;
  if (c.published !== undefined) {
    registry.read("counter", "dist_producer_messages_total", "Messages by outcome", () => [
      [{ outcome: "published" }, c.published!()],
      [{ outcome: "failed" }, c.publishFailed?.() ?? 0],
    ]);
  }
  if (c.received !== undefined) {
    registry.read(
      "counter",
      "dist_consumer_messages_received_total",
      "Messages received from the broker",
      c.received,
    );
  }
  if (c.tasks !== undefined) {
    registry.read("counter", "dist_worker_tasks_total", "Tasks answered, by outcome", () => {
      const errors = c.taskErrors?.() ?? 0;
      return [[{ outcome: "ok" }, c.tasks!() - errors], [{ outcome: "error" }, errors]];
    });
  }
  if (c.registrations !== undefined) {
    registry.read(
      "counter",
      "dist_worker_registrations_total",
      "Registrations with the balancer (one per connection)",
      c.registrations,
    );
  }
}
