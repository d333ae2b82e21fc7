/**
 * `dist balancer --threads N`: N event loops accepting on one port. Thread
 * 0 is the process's main thread; threads 1..N-1 are Web Workers
 * (threads_worker.ts), each running a whole RPC balancer bound with
 * SO_REUSEPORT to the port thread 0 settled (so `--port 0` works), and the
 * kernel spreads client connections over them.
 *
 * Shared: the ports (client and worker). Per thread: connections to the
 * backends and their health checks, the policy's view (least-loaded counts,
 * round-robin position), the queue, `--client-share`, `--max-inflight` per
 * server, dial-in workers (each registers with the thread that accepted
 * it) and `sys.stats` (answered by the thread that took the connection,
 * with its `thread` index). `--metrics` counts every thread's: thread 0
 * serves its registry with the others' samples added (summed; the
 * backends by thread, as each has its pool).
 *
 * Thread 0 owns the process: SIGINT/SIGTERM stop every thread with grace;
 * a thread that fails stops the others and the process exits 1, saying
 * which thread and why, rather than serving on with fewer threads.
 */
import type { RunContext } from "../_role.ts";
import type { SampleSet } from "../../obs/mod.ts";
import { reusePorts } from "../../wire/transport.ts";
import { log } from "./log.ts";
import { DistError } from "../../wire/mod.ts";
import { explainListenError } from "../_listen.ts";

/** Throws, as a bind without SO_REUSEPORT does, when `port` (not 0) is in use. */
function refuseInUse(host: string, port: number, flag: string): void {
  if (port === 0) return;
  try {
    Deno.listen({ hostname: host, port }).close();
  } catch (err) {
    const failed = new DistError("UNAVAILABLE", `Cannot listen on ${host}:${port}`, { cause: err });
    throw explainListenError(failed, flag, host, port);
  }
}

/** Which thread a balancer runs on, and how it tells thread 0 its worker port. */
export interface ThreadInfo {
  index: number;
  count: number;
  /** Thread 0: called with the worker port bound (threads 1..N-1 bind the same). */
  onWorkerPort?: (port: number) => void;
}

/** A message from thread 0 to a worker thread. */
export type ToThread =
  | {
    type: "start";
    options: Record<string, unknown>;
    index: number;
    count: number;
    /** Whether to count for `--metrics` (thread 0 serves them, the threads' added in). */
    metrics: boolean;
  }
  | { type: "samples"; id: number }
  | { type: "stop" };

/** A message from a worker thread to thread 0. */
export type FromThread =
  | { type: "listening" }
  | { type: "exit"; code: number }
  | { type: "samples"; id: number; samples: SampleSet }
  | { type: "failed"; message: string };

/** Runs one balancer on this thread: the RPC balancer of mod.ts. */
export type RunOne<O> = (options: O, ctx: RunContext, thread: ThreadInfo) => Promise<number>;

/** One worker thread as thread 0 sees it. */
interface Thread {
  worker: Worker;
  exited: Promise<number>;
  /** Its metrics' samples now (empty when it does not answer within a second). */
  samples(): Promise<SampleSet>;
}

/** How long a scrape waits for a thread's samples. */
const SAMPLES_WAIT_MS = 1000;

/**
 * Runs `options.threads` balancers on one port until `ctx.signal`.
 * @returns 0 after a clean stop, 1 when a thread failed (and the others were stopped)
 */
export async function runThreads<
  O extends { threads: number; host: string; port: number; workerPort: number },
>(
  options: O,
  ctx: RunContext,
  runOne: RunOne<O>,
): Promise<number> {
  // A port another process holds is refused as with one thread: with SO_REUSEPORT a second
  // balancer joined the first's ports and took half its clients (hostile44c H-C6).
  refuseInUse(options.host, options.port, "--port");
  refuseInUse(options.host, options.workerPort, "--worker-port");
  reusePorts(true);
  const count = options.threads;
  const stop = new AbortController();
  ctx.signal.addEventListener("abort", () => stop.abort(), { once: true });
  let failure: string | undefined;
  const fail = (index: number, why: string) => {
    if (failure !== undefined) return;
    failure = `Balancer thread ${index} failed: ${why}`;
    log.error("{failure}; stopping every thread", { failure });
    stop.abort();
  };
  const threads: Thread[] = [];
  let workerPort = options.workerPort;
  let listening = 1;
  const listened = () => {
    if (++listening === count) log.info("Accepting on {count} threads", { count });
  };
  const metrics = ctx.metrics !== undefined;
  const spawn = (port: number) => {
    const each = { ...shared(options, count), port, workerPort, threads: 1 };
    for (let index = 1; index < count; index++) {
      threads.push(startThread(each, { index, count, fail, listened, metrics }));
    }
  };
  // /metrics is thread 0's registry with every thread's samples added (each isolate counts its own).
  if (ctx.metrics) ctx.metrics.registry.joined = () => Promise.all(threads.map((t) => t.samples()));
  stop.signal.addEventListener("abort", () => {
    for (const t of threads) t.worker.postMessage({ type: "stop" } satisfies ToThread);
  }, { once: true });
  let code: number;
  try {
    code = await runOne({ ...shared(options, count), threads: 1 }, {
      ...ctx,
      signal: stop.signal,
      onListening: (addr) => {
        spawn(addr.port);
        ctx.onListening?.(addr);
      },
    }, { index: 0, count, onWorkerPort: (p) => workerPort = p });
  } finally {
    stop.abort();
    const codes = await Promise.all(threads.map((t) => t.exited));
    for (const t of threads) t.worker.terminate();
    if (codes.some((c) => c !== 0) && failure === undefined) {
      failure = "a thread exited with an error";
    }
  }
  if (failure !== undefined) {
    console.error(`dist: ${failure}`);
    return 1;
  }
  return code;
}

/**
 * A thread's options: its share of `--max-connections`, as of its
 * descriptors (each isolate counts its own: N threads took N times it,
 * hostile46a G1). The kernel spreads many connections about evenly, so a
 * thread may refuse a little before the process is full. Not a source's
 * bound: the kernel spreads one source's few connections unevenly, and a
 * share refused an honest source below it (review r46 R1), so that one
 * stays each thread's.
 */
function shared<O>(options: O, count: number): O {
  const max = (options as { maxConnections?: unknown }).maxConnections;
  return typeof max === "number" && max > 0
    ? { ...options, maxConnections: Math.ceil(max / count) }
    : options;
}

/** What thread 0 hears from a worker thread. */
interface ThreadHooks {
  index: number;
  count: number;
  /** The thread failed or exited with an error. */
  fail: (index: number, why: string) => void;
  /** The thread accepts on the port. */
  listened: () => void;
  metrics: boolean;
}

/** Starts a worker thread. */
function startThread(options: Record<string, unknown>, hooks: ThreadHooks): Thread {
  const { index, count, fail, listened, metrics } = hooks;
  const worker = new Worker(new URL("./threads_worker.ts", import.meta.url), { type: "module" });
  const asked = new Map<number, (s: SampleSet) => void>();
  let asks = 0;
  // A thread that does not answer in time counts as its last answer: left out, every counter
  // of the scrape went down, a reset to Prometheus (hostile46a G7).
  let last: SampleSet = new Map();
  const samples = () =>
    new Promise<SampleSet>((resolve) => {
      const id = ++asks;
      const timer = setTimeout(() => answered(id, last), SAMPLES_WAIT_MS);
      asked.set(id, (s) => (clearTimeout(timer), resolve(s)));
      worker.postMessage({ type: "samples", id } satisfies ToThread);
    });
  const answered = (id: number, s: SampleSet) => {
    asked.get(id)?.(s);
    asked.delete(id);
  };
  const exited = new Promise<number>((resolve) => {
    worker.onmessage = (e: MessageEvent<FromThread>) => {
      const m = e.data;
      if (m.type === "samples") {
        last = m.samples;
        answered(m.id, m.samples);
      } else if (m.type === "listening") {
        listened();
      } else if (m.type === "failed") {
        fail(index, m.message);
        resolve(1);
      } else if (m.type === "exit") {
        if (m.code !== 0) fail(index, `Exited with code ${m.code}`);
        resolve(m.code);
      }
    };
    worker.onerror = (e: ErrorEvent) => {
      // Reported here and by thread 0's exit code, not as an uncaught error of thread 0.
      e.preventDefault();
      fail(index, e.message);
      resolve(1);
    };
  });
  worker.postMessage({ type: "start", options, index, count, metrics } satisfies ToThread);
  return { worker, exited, samples };
}
