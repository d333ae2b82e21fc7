/**
 * A worker inside any program: {@link serve} dials a balancer's worker
 * port, registers (`worker.register {name, capacity}`) and answers the
 * requests the balancer hands it on that connection with the handlers of
 * its contracts. When the balancer goes away it dials again with backoff
 * and registers again (the ZeroMQ guide's Paranoid Pirate worker; the
 * heartbeats are the wire's).
 */
import { getLogger } from "@logtape/logtape";
import { cut } from "../wire/_log.ts";
import type { Address } from "../config/values.ts";
import {
  call,
  type CodecName,
  type ConnSettings,
  type Contract,
  type Credentials,
  dispatch,
  DistError,
  type Handlers,
  type RequestHandler,
  type ServiceHandlers,
} from "../wire/mod.ts";
import { Connection } from "./connection.ts";
import { checkConnectOptions } from "./connect_options.ts";
import { MAX_WORKER_CAPACITY, type Stats, sys, worker } from "./contracts/mod.ts";

const log = getLogger(["dist", "worker"]);

/** How {@link serve} serves. */
export interface ServeOptions {
  /** Most requests handled at once: the balancer sends no more. */
  capacity: number;
  /** The worker's name, registered with the balancer (default `worker-PID`). */
  name?: string;
  /** The connection's codec (default `json`). */
  codec?: CodecName;
  /** Counters added to `sys.stats`. */
  stats?: () => Record<string, unknown>;
  /** Aborting it stops serving (requests in flight are cut: use `drain()` to finish them). */
  signal?: AbortSignal;
  /**
   * What to prove who this worker is with, where the other side asks
   * (`--token`/`--users` on it): a token, or a user and password.
   */
  credentials?: Credentials;
  /** Frame limit, heartbeat, liveness and write timeout of the connection. */
  wire?: ConnSettings;
  /**
   * Wraps the request handler (the CLI worker's debug log of each request).
   * @ignore
   */
  wrap?: (handler: RequestHandler) => RequestHandler;
}

/** A running {@link serve}. */
export interface Serving {
  /** The worker's name. */
  readonly name: string;
  /** Whether it is connected and registered now. */
  readonly connected: boolean;
  /** Requests being handled now. */
  readonly handling: number;
  /** Requests taken, requests that failed, and registrations so far. */
  readonly counters: { tasks: number; errors: number; registrations: number };
  /**
   * Resolves when serving ends: undefined after `stop()`, or why it gave up
   * on a refusal that dialing again will not change (also logged once, as an
   * error): UNKNOWN_METHOD (what it dialed answered `worker.register` so: it
   * is not a balancer's worker port), BAD_REQUEST (the balancer refused its
   * name or capacity), UNAUTHORIZED (its credentials were refused before it
   * ever registered). A balancer that is down, restarts or refuses for now
   * (a name a live worker holds, too many workers) is dialed again.
   */
  readonly ended: Promise<DistError | undefined>;
  /** Resolves once registered (true), or false after `timeoutMs`. */
  registered(timeoutMs: number): Promise<boolean>;
  /** Lets requests in flight finish (up to `graceMs`), then stops. */
  drain(graceMs?: number): Promise<void>;
  /** Stops now: requests in flight are cut. */
  stop(): Promise<void>;
}

/**
 * Serves `service`'s contracts as a worker of the balancer at `balancer`
 * (its worker port): `sys.ping` and `sys.stats` are answered besides.
 * Dials until stopped; a balancer that is down or restarts is dialed again
 * (see {@link Serving.ended} for the refusals that end it).
 * @throws {DistError} BAD_REQUEST, at once, for a capacity that is not an
 * integer from 1 to 10,000, a name no balancer takes, or another option out
 * of its range (`wire`, `codec`)
 */
export function serve<const Cs extends readonly Contract[]>(
  balancer: string | Address,
  service: { contracts: Cs; handlers: NoInfer<ServiceHandlers<Cs>> },
  options: ServeOptions,
): Serving {
  checkConnectOptions(options, "serve()");
  const started = performance.now();
  const name = options.name ?? `worker-${Deno.pid}`;
  const { capacity } = options;
  checkServeOptions(name, capacity);
  const counters = { tasks: 0, errors: 0, registrations: 0 };
  const stats = (): Stats => ({
    role: "worker",
    name,
    uptime_ms: Math.round(performance.now() - started),
    rss_bytes: Deno.memoryUsage().rss,
    balancer: where(conn.address),
    connected: conn.connected,
    registrations: counters.registrations,
    capacity,
    tasks: counters.tasks,
    errors: counters.errors,
    ...options.stats?.(),
  });
  const d = dispatch([sys, ...service.contracts], {
    ...service.handlers,
    "sys.ping": () => ({ pong: true, role: "worker", name }),
    "sys.stats": stats,
  } as unknown as Handlers<[typeof sys, ...Cs]>); // the caller's handlers were checked at this call
  // Requests other than sys.* are tasks; one that fails at once counts as an error. Past twice
  // its capacity and 16 a task is refused OVERLOADED: a balancer that ignored it (a squatter of
  // its port, a bug) ran 2,000 at once in a worker of capacity 4 (hostile46c F6); an honest one
  // may send more than the capacity when tasks outlive its timeout, so not at the capacity.
  let running = 0;
  const most = 2 * capacity + 16;
  const counting: RequestHandler = (method, params, peer, meta) => {
    if (method.startsWith("sys.")) return d.onRequest(method, params, peer, meta);
    if (running >= most) {
      throw new DistError("OVERLOADED", `Worker ${name} runs at most ${most} tasks at once`);
    }
    counters.tasks++;
    running++;
    let result: unknown;
    try {
      result = d.onRequest(method, params, peer, meta);
    } catch (err) {
      running--;
      counters.errors++;
      throw err;
    }
    if (result instanceof Promise) return result.finally(() => running--);
    running--;
    return result;
  };
  const onRequest = options.wrap?.(counting) ?? counting;
  const waiters: (() => void)[] = [];
  let end!: (why: DistError | undefined) => void;
  const ended = new Promise<DistError | undefined>((resolve) => end = resolve);
  const where = (a: { host: string; port: number }) => `${a.host}:${a.port}`;
  let failures = 0;
  const giveUp = (why: DistError) => {
    log.error("Worker {name} stops serving: {message}", { name, message: cut(why.message) });
    conn.close();
    end(why);
  };
  // Said here, not by the dialer: a refusal that dialing again cannot change ends serving.
  const onDialError = (err: DistError) => {
    failures++;
    if (err.code === "UNAUTHORIZED" && counters.registrations === 0) {
      // Its credentials never passed: the same ones will not next time (h47 Q22). Once they
      // have, a refusal may be a rotation under way, and it dials on.
      giveUp(new DistError("UNAUTHORIZED", `${where(conn.address)}: ${err.message}`));
    } else if (failures === 1 || failures % 10 === 0) {
      log.warn("Cannot register with {addr}: {error}; retrying", {
        addr: where(conn.address),
        error: cut(err.message),
      });
    }
  };
  const conn = new Connection(balancer, {
    role: "worker",
    name,
    codec: options.codec,
    wire: options.wire,
    credentials: options.credentials,
    waitOnFirstConnect: true,
    signal: options.signal,
  }, {
    by: name,
    onRequest,
    onDialError,
    onNotification: d.onNotification,
    onConnect: async (peer) => {
      // What the balancer took: it caps a capacity above its --max-inflight.
      let taken = capacity;
      try {
        taken = (await call(peer, worker.methods.register, { name, capacity }, { timeout: 5000 }))
          .capacity;
      } catch (err) {
        if (err instanceof DistError && err.code === "UNKNOWN_METHOD") {
          giveUp(
            new DistError(
              "UNKNOWN_METHOD",
              `${where(conn.address)} is not a balancer's worker port: ${peer.remote.name} ` +
                `(${peer.remote.role}) answered worker.register with: ${err.message}`,
            ),
          );
        } else if (err instanceof DistError && err.code === "BAD_REQUEST" && paramsRefused(err)) {
          // Its name or capacity, refused by this balancer's own limits: the same again next
          // time (h47 Q22: it dialed and registered again for ever, saying why in a log line).
          giveUp(
            new DistError(
              "BAD_REQUEST",
              `${where(conn.address)} refused worker ${name}: ${err.message}`,
            ),
          );
        }
        throw err;
      }
      failures = 0;
      counters.registrations++;
      log.info("Registered with {addr} as {name} (capacity {capacity})", {
        addr: where(conn.address),
        name,
        capacity: taken,
      });
      for (const w of waiters.splice(0)) w();
    },
  });
  return {
    name,
    counters,
    ended,
    get connected() {
      return conn.connected;
    },
    get handling() {
      return conn.peer?.handling ?? 0;
    },
    registered(timeoutMs) {
      if (conn.connected) return Promise.resolve(true);
      return new Promise((resolve) => {
        const timer = setTimeout(() => resolve(false), timeoutMs);
        waiters.push(() => (clearTimeout(timer), resolve(true)));
      });
    },
    async drain(graceMs = 2000) {
      await conn.peer?.idle(graceMs);
      await this.stop();
    },
    async stop() {
      conn.close();
      await conn.closed();
      end(undefined);
    },
  };
}

/**
 * Refuses options no balancer takes, at once (h47 Q22: a capacity of 0, -1
 * or NaN was registered, refused and registered again for ever).
 * @throws {DistError} BAD_REQUEST naming the option
 */
function checkServeOptions(name: string, capacity: number): void {
  if (!Number.isInteger(capacity) || capacity < 1 || capacity > MAX_WORKER_CAPACITY) {
    throw new DistError(
      "BAD_REQUEST",
      `serve(): capacity must be an integer from 1 to ${MAX_WORKER_CAPACITY}, got ${capacity}`,
    );
  }
  try {
    worker.methods.register.params({ name, capacity });
  } catch (err) {
    throw new DistError("BAD_REQUEST", `serve(): name: ${(err as Error).message}`);
  }
}

/** Whether a BAD_REQUEST to `worker.register` is about its params (not a name held by another). */
function paramsRefused(err: DistError): boolean {
  return err.message.startsWith("worker.register");
}
