/**
 * TCP health checks of the L4 mode: every check interval each backend is
 * dialed and the connection closed at once (HAProxy's `check` on a `mode
 * tcp` server). The pool's rules (backends.ts) decide what a result means,
 * as they do for the RPC mode's `sys.ping`: a refused or failed dial takes
 * a backend out at once (as a refused connect does in RPC mode), a dial
 * that times out counts as a missed check (`--fall` in a row take it out),
 * and `--rise` successful dials in a row bring it back. A dial that fails
 * for want of a file descriptor here (EMFILE, ENFILE) says nothing of the
 * backend: it changes nothing (hostile35 H2: it took every backend out).
 *
 * A check dials as a client's connection does (io.ts: through libc's
 * sockets and the balancer's own epoll where it runs on them), not through
 * Deno's connect op (its promise, the op, the runtime's reactor): about 50
 * µs of CPU a check less (stop 48: 20 checks a second, lower in 7 of 7
 * windows of 10 s, paired median 0.92 ms of CPU a second less).
 */
import { DistError, sleep } from "../../../wire/mod.ts";
import { isDescriptorShortage } from "../../../wire/descriptors.ts";
import type { Backend, Transition } from "../backends.ts";
import type { BackendConn, DialHooks } from "./io.ts";
import { Outlier } from "../outlier.ts";
import { cut, log, LogBudget } from "../log.ts";

/** Longest a check's dial (and a client's connect to a backend) may take (ms). */
export const CONNECT_TIMEOUT_MS = 3000;

/** What one check of a backend found. */
export type CheckResult =
  | { ok: true; ms: number }
  | { ok: false; timedOut: boolean; reason: string; local?: boolean };

/** Checks not made for want of a descriptor (at most 20 lines a second). */
const shortageLines = new LogBudget("checks");

/** Dials `backend` (io.ts's dial: its hooks are told how it went, once). */
export type CheckDial = (
  backend: Backend,
  timeoutMs: number,
  hooks: DialHooks,
  signal?: AbortSignal,
) => void;

/**
 * Dials `backend` once and hangs up; resolves at once when `signal` aborts
 * (the dial then ends on its own: closed if it connects, or failed by the
 * sockets' close).
 */
export function checkOnce(
  dial: CheckDial,
  backend: Backend,
  timeoutMs: number,
  signal?: AbortSignal,
): Promise<CheckResult> {
  return new Promise((resolve) => new Check(resolve, signal).start(dial, backend, timeoutMs));
}

/** One check's dial: its hooks, and the abort that gives up waiting for it. */
class Check implements DialHooks {
  readonly #started = performance.now();
  #settled = false;

  constructor(
    readonly resolve: (result: CheckResult) => void,
    readonly signal: AbortSignal | undefined,
  ) {}

  start(dial: CheckDial, backend: Backend, timeoutMs: number): void {
    if (this.signal?.aborted) return this.#settle(aborted());
    this.signal?.addEventListener("abort", this.#abort, { once: true });
    try {
      dial(backend, timeoutMs, this, this.signal);
    } catch (err) {
      this.failed(err);
    }
  }

  dialed(conn: BackendConn): void {
    conn.close();
    this.#settle({ ok: true, ms: performance.now() - this.#started });
  }

  failed(err: unknown): void {
    this.#settle({
      ok: false,
      timedOut: err instanceof DistError && err.code === "TIMEOUT",
      reason: (err as Error).message,
      local: isDescriptorShortage(err),
    });
  }

  readonly #abort = () => this.#settle(aborted());

  #settle(result: CheckResult): void {
    if (this.#settled) return;
    this.#settled = true;
    this.signal?.removeEventListener("abort", this.#abort);
    this.resolve(result);
  }
}

function aborted(): CheckResult {
  return { ok: false, timedOut: false, reason: "Aborted" };
}

/**
 * A backend's outlier state in this mode: no slow start. The RPC mode lets
 * a backend back after being out have one request in flight until it
 * answers; here `inflight` counts open connections, which a backend keeps
 * while it is out (a failed check ends none), so one kept connection made
 * it unavailable until every old connection ended — with long-lived ones
 * (a pool of Redis or database connections), for good, and with every
 * backend so, every new client was closed "no backend is up". (HAProxy's
 * `slowstart` in `mode tcp` ramps a weight over time, and is off unless set.)
 */
export class ConnectionOutlier extends Outlier {
  override joined(): void {
    // Back in rotation at once, at full weight.
  }
}

/** What a check, or a client's connect, tells the pool about `backend`. */
export function judge(backend: Backend, result: CheckResult): Transition | undefined {
  if (result.ok) return backend.connected ? backend.onCheckPassed() : backend.onConnected();
  if (result.timedOut) return backend.onCheckFailed(result.reason);
  return backend.onLost(result.reason);
}

/** Checks every backend of `list` every `intervalMs` until `signal` aborts. */
export class TcpChecks {
  readonly #intervalMs: number;
  readonly #report: (t: Transition | undefined) => void;
  readonly #dial: CheckDial;
  readonly #stop = new AbortController();
  #loops: Promise<void>[] = [];

  constructor(
    intervalMs: number,
    report: (t: Transition | undefined) => void,
    dial: CheckDial,
  ) {
    this.#intervalMs = intervalMs;
    this.#report = report;
    this.#dial = dial;
  }

  /**
   * A check of each backend now; resolves once each is answered or timed
   * out. A backend not there from the start is said too (it was never up,
   * so no transition says it).
   */
  async first(list: readonly Backend[]): Promise<void> {
    await Promise.all(list.map(async (b) => {
      const result = await this.#check(b);
      if (!result.ok) {
        log.warn("Backend {backend} is not up yet: {reason}", {
          backend: b.name,
          reason: cut(result.reason),
        });
      }
    }));
  }

  /** Checks each backend every interval from now on. */
  start(list: readonly Backend[]): void {
    this.#loops = list.map((b) => this.#loop(b));
  }

  async stop(): Promise<void> {
    this.#stop.abort();
    await Promise.all(this.#loops);
  }

  async #loop(backend: Backend): Promise<void> {
    const signal = this.#stop.signal;
    while (!signal.aborted) {
      await sleep(this.#intervalMs, signal);
      if (signal.aborted) return;
      await this.#check(backend);
    }
  }

  async #check(backend: Backend): Promise<CheckResult> {
    // At least a second: a loaded machine can take that long to answer a
    // connect, and a check that times out is a miss, not a dead backend.
    const timeoutMs = Math.min(CONNECT_TIMEOUT_MS, Math.max(1000, this.#intervalMs));
    // Stopping does not wait for a check's connect.
    const result = await checkOnce(this.#dial, backend, timeoutMs, this.#stop.signal);
    if (this.#stop.signal.aborted) return result;
    if (!result.ok && result.local === true) {
      shortageLines.warn("Check of backend {backend} not made: {reason}; its state is unchanged", {
        backend: backend.name,
        reason: cut(result.reason),
      });
      return result;
    }
    // A refused check takes the backend out without counting as missed (onLost): count it.
    if (!result.ok && !result.timedOut) backend.checksFailed++;
    this.#report(judge(backend, result));
    return result;
  }
}
