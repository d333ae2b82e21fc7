/**
 * A balancer's dispatcher driven without sockets (roles/balancer/forward.ts):
 * two backends of 128 slots (or `capacity`), round-robin, each job of its own size, client
 * connections mapped to sources, on a clock of the test's (or the real one).
 */
import {
  Backend,
  createPolicy,
  Dispatcher,
  type Job,
  Pool,
  RetryBudget,
} from "../../roles/balancer/mod.ts";
import { newJob } from "./balancer.ts";

export interface SizedJob extends Job {
  id: number;
  size: number;
}

/**
 * The dispatcher and its levers: `conn(source)` a client connection,
 * `submit(flow, size)` a request, `answer(job)` its answer; `on` holds the
 * jobs on the backends (and where). `now`: the clock (default: the test's,
 * moved by `clock.advance`).
 */
export function sizedDispatcher(
  options: {
    now?: () => number;
    queueTimeoutMs?: number;
    contendedShare?: number;
    unread?: (flow: object) => boolean;
    capacity?: number;
    queueLimit?: number;
    /** Told of each job as it goes to `backend`, before `on` holds it. */
    sending?: (job: SizedJob, backend: Backend) => void;
  } = {},
) {
  let now = 1_000_000;
  const clock = { now: options.now ?? (() => now), advance: (ms: number) => now += ms };
  const pool = new Pool();
  for (const name of ["b1", "b2"]) {
    const b = new Backend("server", name, {
      capacity: options.capacity ?? 128,
      rules: { rise: 2, fall: 3 },
    });
    b.onConnected();
    pool.add(b);
  }
  const sources = new Map<object, string>();
  const on = new Map<SizedJob, Backend>();
  const rejected: SizedJob[] = [];
  const dispatcher: Dispatcher<SizedJob> = new Dispatcher(pool, createPolicy("round-robin"), {
    send(job, backend) {
      options.sending?.(job, backend);
      on.set(job, backend);
      return true;
    },
    reject(job) {
      rejected.push(job);
    },
    sizeOf: (job) => job.size,
  }, {
    queueLimit: options.queueLimit ?? 10_000,
    queueBytes: Infinity,
    queueTimeoutMs: options.queueTimeoutMs ?? 3_000,
    retries: 0,
    budget: new RetryBudget({ minPerSecond: 100 }),
    now: clock.now,
    sourceOf: (flow) => sources.get(flow),
    contendedShare: options.contendedShare,
    unread: options.unread,
  });
  let next = 1;
  const conn = (source: string) => {
    const flow = {};
    sources.set(flow, source);
    return flow;
  };
  const submit = (flow: object, size: number) => {
    const job = newJob({ id: next++, size, flow });
    dispatcher.submit(job);
    return job;
  };
  const answer = (job: SizedJob) => {
    on.delete(job);
    dispatcher.finish(job, "answered");
  };
  return { dispatcher, clock, conn, submit, answer, on, rejected };
}
