/**
 * The balancer's own methods: `balancer.backends` on its client port, and
 * `worker.register` on its worker port (what a worker calls once it has
 * dialed). Any other method sent to the client port is forwarded.
 */
import { DistError } from "../../wire/errors.ts";
import {
  arrayOf,
  count,
  finite,
  int,
  isPrintable,
  obj,
  oneOf,
  opt,
  type Parse,
  str,
} from "../../wire/check.ts";
import { type Contract, type Method, method } from "../../wire/contract.ts";

/** Most a worker may declare as its capacity. */
export const MAX_WORKER_CAPACITY = 10_000;

/** One backend as `balancer.backends` lists it. */
export interface BackendInfo {
  /** The server's address, or the worker's name. */
  name: string;
  /** Where it is (a worker: its remote address). */
  address: string;
  /** What the backend said its name is (in the handshake). */
  peer: string;
  /** A server the balancer dials, or a worker that dialed in. */
  kind: "server" | "worker";
  /** Where it came from: `backends`, `service NAME`, `worker port`. */
  source: string;
  /** Whether it takes requests. */
  state: "up" | "down";
  /** Why it is in its state. */
  reason: string;
  /** Milliseconds in that state. */
  since_ms: number;
  /** Requests it has now. */
  inflight: number;
  /** The most it is given at once. */
  capacity: number;
  /** Requests it answered. */
  served: number;
  /** Requests lost with it. */
  failures: number;
  /** Health checks it missed. */
  checks_failed: number;
  /** Its answers' latency percentiles (ms). */
  latency_ms: { p50: number; p90: number; p99: number; max: number };
}

/**
 * `balancer.backends` params: none for every backend (refused
 * `FRAME_TOO_LARGE` when they do not fit a frame), or a page: the backends
 * from `offset` on (default 0), at most `limit`, as many as fit a frame; an
 * empty page is the end. Texts are cut to a budget of bytes in either case
 * (a name to 200 bytes of JSON, its head and tail kept).
 */
export interface BackendsPage {
  /** The first backend listed (0 the first of all). */
  offset?: number;
  /** The most listed. */
  limit?: number;
}

/** `worker.register` params: the worker's name and how many tasks it runs at once. */
export interface WorkerRegistration {
  /** Unique among the balancer's workers: 1-200 printable characters, in Unicode NFKC form. */
  name: string;
  /** Default 1, at most MAX_WORKER_CAPACITY. */
  capacity?: number;
}

/** What `worker.register` answers. */
export interface WorkerRegistered {
  /** The name registered. */
  registered: string;
  /** The capacity registered. */
  capacity: number;
  /** The balancer's name. */
  balancer: string;
}

/** The balancer's client-port methods. */
export interface BalancerContract extends Contract {
  /** The service's name. */
  readonly service: "balancer";
  /** Its methods, by short name. */
  readonly methods: {
    /** Every backend with its health and load, or a page of them ({@link BackendsPage}). */
    readonly backends: Method<"balancer.backends", BackendsPage | undefined, BackendInfo[]>;
  };
  /** It sends no events. */
  readonly events: Record<never, never>;
}

/** What workers call on the balancer's worker port. */
export interface WorkerContract extends Contract {
  /** The service's name. */
  readonly service: "worker";
  /** Its methods, by short name. */
  readonly methods: {
    /**
     * Makes this connection a backend: the balancer then sends it requests.
     * @throws BAD_REQUEST for a bad name or capacity, a second registration, or a name
     * a live worker holds
     */
    readonly register: Method<"worker.register", WorkerRegistration, WorkerRegistered>;
  };
  /** It sends no events. */
  readonly events: Record<never, never>;
}

const backendInfo: Parse<BackendInfo> = obj({
  name: str,
  address: str,
  peer: str,
  kind: oneOf(["server", "worker"]),
  source: str,
  state: oneOf(["up", "down"]),
  reason: str,
  since_ms: count,
  inflight: count,
  capacity: count,
  served: count,
  failures: count,
  checks_failed: count,
  latency_ms: obj({ p50: finite, p90: finite, p99: finite, max: finite }),
});

/** `balancer.backends`. */
export const balancer: BalancerContract = {
  service: "balancer",
  prefix: "balancer.",
  methods: {
    backends: method("balancer.backends", {
      params: obj({ offset: opt(count), limit: opt(int(1, Number.MAX_SAFE_INTEGER)) }, {
        positional: true,
        omittable: true,
      }),
      result: arrayOf(backendInfo, 1_000_000),
    }),
  },
  events: {},
};

/**
 * C0, DEL and C1 controls: a name is shown in listings and logs, and JSON
 * writes each as six bytes (hostile43a A10: 600 workers of 200 such
 * characters made `balancer.backends` too large for a frame).
 */

const registration: Parse<WorkerRegistration> = (params) => {
  if (params === null || typeof params !== "object" || Array.isArray(params)) {
    throw new DistError("BAD_REQUEST", "worker.register takes {name, capacity}");
  }
  const p = params as Record<string, unknown>;
  if (
    typeof p.name !== "string" || p.name === "" || p.name.length > 200 ||
    !isPrintable(p.name)
  ) {
    throw new DistError(
      "BAD_REQUEST",
      "worker.register: name must be a string of 1-200 chars, none a control, line separator, bidi or invisible format character",
    );
  }
  // One name, one look: a name is taken only in Unicode NFKC form, so no two names differ by a
  // fullwidth letter, a no-break space or a ligature alone (hostile46a: `ｗ1` beside `w1`).
  const folded = p.name.normalize("NFKC");
  if (folded !== p.name) {
    throw new DistError(
      "BAD_REQUEST",
      `worker.register: name ${JSON.stringify(p.name)} is not in Unicode NFKC form ` +
        `(compatibility characters such as fullwidth letters or U+00A0): register as ${
          JSON.stringify(folded)
        }`,
    );
  }
  const capacity = p.capacity ?? 1;
  if (
    typeof capacity !== "number" || !Number.isInteger(capacity) || capacity < 1 ||
    capacity > MAX_WORKER_CAPACITY
  ) {
    throw new DistError(
      "BAD_REQUEST",
      `worker.register: capacity must be an integer from 1 to ${MAX_WORKER_CAPACITY}`,
    );
  }
  return { name: p.name, capacity };
};

/** `worker.register`. */
export const worker: WorkerContract = {
  service: "worker",
  prefix: "worker.",
  methods: {
    register: method("worker.register", {
      params: registration,
      // Taking a balancer's requests is acting as a worker: users files grant it in `roles`.
      resource: () => ({ action: "role", name: "worker" }),
      result: obj({ registered: str, capacity: count, balancer: str }),
      idempotent: false,
      errors: ["BAD_REQUEST"],
    }),
  },
  events: {},
};
