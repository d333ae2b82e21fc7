import { counted } from "../_role.ts";
import { type CallOptions, DistError } from "../../wire/mod.ts";
import { ByCount, type Caller, formatBy, round } from "./_common.ts";
import type { Operation } from "../ops.ts";
import { Ticker } from "./ticker.ts";

/** The numbers a benchmark run ends with (`--bench --json` prints this object). */
export interface BenchSummary {
  /** Requests that came back, well or not. */
  requests: number;
  ok: number;
  /** Failed requests by error code. */
  errors: Record<string, number>;
  duration_s: number;
  /** Successful requests per second: failures are not throughput. */
  rps: number;
  /** Latency of successful requests only. */
  latency_ms: { p50: number; p90: number; p99: number; p999: number; max: number; mean: number };
  /** Answers by their `by`: at most 100 names, each cut to 64 characters. */
  by: Record<string, number>;
  /** Answers under a `by` past the first 100 names. */
  by_others?: number;
  concurrency: number;
  connections: number;
  /** `--rate`: the target arrival rate (req/s). */
  rate?: number;
  /** `--rate`: requests started per second of the schedule. */
  achieved_rate?: number;
  /** `--rate`: how late requests started after their scheduled time. */
  start_lag_ms?: { p50: number; p99: number; max: number };
  /** `--rate`: what to do when the rate was not reached. */
  advice?: string;
  /** Why the run ended early: a lost connection, or an interrupt. */
  stopped?: string;
}

export interface BenchPlan {
  op: Operation;
  /** Stop after this many requests (or after `durationMs`, whichever comes first). */
  requests?: number;
  durationMs?: number;
  concurrency: number;
  /** Fixed arrival rate (req/s): latency counts from each request's scheduled start. */
  rate?: number;
  timeout: number;
  /** Called every 200 ms with the requests done so far (for a progress bar). */
  onProgress?: (done: number, elapsedMs: number) => void;
  /** When aborted, no new request starts; those in flight finish. */
  signal?: AbortSignal;
}

/** Below this share of the target rate, the report says the rate was not reached. */
const RATE_SHORTFALL = 0.95;

/** Reads a value at quantile q of sorted numbers. */
function quantile(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)];
}

/** A growable array of doubles (latencies, start lags) without per-value allocation. */
class Samples {
  #values: Float64Array;
  length = 0;

  constructor(capacity: number) {
    this.#values = new Float64Array(Math.max(16, Math.min(capacity, 1 << 24)));
  }

  push(value: number): void {
    if (this.length === this.#values.length) {
      const grown = new Float64Array(this.#values.length * 2);
      grown.set(this.#values);
      this.#values = grown;
    }
    this.#values[this.length++] = value;
  }

  sorted(): Float64Array {
    return this.#values.subarray(0, this.length).sort();
  }
}

/** What a run counts as it goes. */
class Tally {
  latencies: Samples;
  errors: Record<string, number> = {};
  failed = 0;
  by = new ByCount();
  stopped?: string;

  constructor(expected: number) {
    this.latencies = new Samples(expected);
  }

  get done(): number {
    return this.latencies.length + this.failed;
  }

  ok(ms: number, by: string | undefined): void {
    this.latencies.push(ms);
    if (by !== undefined) this.by.add(by);
  }

  fail(err: unknown, peer: Caller, t0: number): void {
    const code = DistError.from(err).code;
    this.errors[code] = (this.errors[code] ?? 0) + 1;
    this.failed++;
    // A lost connection (closed, or its read side ended: nothing more can
    // come) ends the run rather than failing every request after it.
    if (!peer.canCall && this.stopped === undefined) {
      const after = ((performance.now() - t0) / 1000).toFixed(2);
      this.stopped = `connection to ${peer.remote?.name} lost after ${after} s`;
    }
  }
}

/**
 * Runs a closed-loop benchmark (`concurrency` requests always in flight,
 * spread over `peers`) or, with `rate`, an open-loop one where requests start
 * on a fixed schedule whatever the latency, so slow answers cannot hide
 * behind fewer requests (no coordinated omission, as wrk2).
 *
 * A first request is sent alone: if it fails, the benchmark does not run.
 * Throughput and latency count successful requests only; a lost connection
 * ends the run (`stopped` says so).
 *
 * @throws {DistError} the first request's error, when it fails
 */
export async function runBench(peers: Caller[], plan: BenchPlan): Promise<BenchSummary> {
  try {
    await peers[0].exchange(plan.op.method, plan.op.params, {
      timeout: plan.timeout,
      signal: plan.signal,
    });
  } catch (err) {
    const e = DistError.from(err);
    if (!plan.signal?.aborted) {
      throw new DistError(
        e.code,
        `The first request failed, so the benchmark did not run: ${e.message}`,
      );
    }
  }
  // Interrupted during the first request: nothing more is sent.
  const limit = plan.signal?.aborted ? 0 : plan.requests ?? Infinity;
  const t0 = performance.now();
  const endAt = plan.durationMs !== undefined ? t0 + plan.durationMs : Infinity;
  const tally = new Tally(Number.isFinite(limit) ? limit : 1 << 16);
  const progress = plan.onProgress
    ? setInterval(() => plan.onProgress!(tally.done, performance.now() - t0), 200)
    : undefined;
  let open: OpenLoopResult | undefined;
  try {
    if (plan.rate === undefined) await closedLoop(peers, plan, tally, { t0, limit, endAt });
    else open = await openLoop(peers, plan, tally, { limit, endAt });
  } finally {
    clearInterval(progress);
  }
  const elapsed = performance.now() - t0;
  plan.onProgress?.(tally.done, elapsed);
  if (tally.stopped === undefined && plan.signal?.aborted) tally.stopped = "interrupted";
  return summarize(tally, { plan, peers, elapsed, open });
}

/** Each of `concurrency` loops sends a request as soon as its previous one is answered. */
async function closedLoop(
  peers: Caller[],
  plan: BenchPlan,
  tally: Tally,
  bounds: { t0: number; limit: number; endAt: number },
): Promise<void> {
  // The hot loop: one await per request, no wrapper promise.
  const { method, params } = plan.op;
  const callOptions = { timeout: plan.timeout };
  let started = 0;
  await Promise.all(Array.from({ length: plan.concurrency }, async (_, i) => {
    const peer = peers[i % peers.length];
    let now = performance.now();
    while (
      started < bounds.limit && now < bounds.endAt && !plan.signal?.aborted &&
      tally.stopped === undefined
    ) {
      started++;
      const sent = now;
      try {
        const res = await peer.exchange(method, params, callOptions);
        now = performance.now();
        tally.ok(now - sent, res.by);
      } catch (err) {
        now = performance.now();
        tally.fail(err, peer, bounds.t0);
      }
    }
  }));
}

interface OpenLoopResult {
  started: number;
  /** From the first scheduled start to the end of scheduling (ms). */
  scheduleMs: number;
  lags: Samples;
  /** Requests that were due while every slot was busy. */
  slotWaits: number;
}

/**
 * Starts request i at t0 + i/rate, woken by a {@link Ticker}. At most
 * `concurrency` are in flight; a request that must wait for a free slot
 * still counts its latency from its scheduled time. Scheduling ends at the
 * duration (whatever was not started by then is not sent), after `limit`
 * requests, on abort, or when a connection is lost.
 */
async function openLoop(
  peers: Caller[],
  plan: BenchPlan,
  tally: Tally,
  bounds: { limit: number; endAt: number },
): Promise<OpenLoopResult> {
  const loop = new OpenLoop(peers, plan, tally, bounds.limit);
  const begun = performance.now();
  try {
    loop.ticker = await Ticker.start(
      { intervalMs: loop.interval, count: bounds.limit },
      () => loop.pump(),
    );
  } catch (err) {
    tally.stopped = (err as Error).message;
    return loop.result;
  }
  loop.t0 = loop.ticker.t0;
  // The duration counts from the first tick, not from the thread's start-up.
  loop.endAt = bounds.endAt + (loop.t0 - begun);
  await loop.done();
  return loop.result;
}

/** The state of an open-loop run: what is scheduled, started and in flight. */
class OpenLoop {
  readonly interval: number;
  readonly result: OpenLoopResult;
  ticker: Ticker | undefined;
  t0 = Infinity;
  endAt = Infinity;
  #peers: Caller[];
  #plan: BenchPlan;
  #tally: Tally;
  #limit: number;
  #callOptions: CallOptions;
  #inFlight = 0;
  #scheduling = true;
  #allDone: () => void = () => {};

  constructor(peers: Caller[], plan: BenchPlan, tally: Tally, limit: number) {
    this.#peers = peers;
    this.#plan = plan;
    this.#tally = tally;
    this.#limit = limit;
    this.#callOptions = { timeout: plan.timeout };
    this.interval = 1000 / plan.rate!;
    this.result = {
      started: 0,
      scheduleMs: 0,
      lags: new Samples(Number.isFinite(limit) ? limit : 1 << 16),
      slotWaits: 0,
    };
  }

  /** Resolves once scheduling has ended and every request started is answered. */
  async done(): Promise<void> {
    const { signal } = this.#plan;
    const done = new Promise<void>((resolve) => this.#allDone = resolve);
    const pump = () => this.pump();
    const endTimer = this.endAt === Infinity
      ? undefined
      : setTimeout(pump, this.endAt - performance.now());
    signal?.addEventListener("abort", pump);
    if (signal?.aborted) pump();
    try {
      await done;
    } finally {
      clearTimeout(endTimer);
      signal?.removeEventListener("abort", pump);
    }
  }

  /** Starts every request that is due and has a slot. */
  pump(): void {
    if (!this.#scheduling || this.ticker === undefined) return;
    const now = performance.now();
    const { signal, concurrency } = this.#plan;
    if (now >= this.endAt || signal?.aborted || this.#tally.stopped !== undefined) {
      return this.#finish(now);
    }
    const result = this.result;
    while (result.started < this.#limit) {
      const scheduled = this.t0 + result.started * this.interval;
      // The ticker's clock may run a few µs ahead of this one.
      if (scheduled > now + 0.01) return;
      if (scheduled >= this.endAt) return this.#finish(now);
      if (this.#inFlight >= concurrency) {
        result.slotWaits++;
        return;
      }
      result.lags.push(Math.max(0, now - scheduled));
      this.#start(this.#peers[result.started % this.#peers.length], scheduled);
      result.started++;
    }
    this.#finish(now);
  }

  #start(peer: Caller, scheduled: number): void {
    const { method, params } = this.#plan.op;
    const tally = this.#tally;
    this.#inFlight++;
    peer.exchange(method, params, this.#callOptions).then(
      (res) => tally.ok(performance.now() - scheduled, res.by),
      (err) => tally.fail(err, peer, this.t0),
    ).finally(() => {
      this.#inFlight--;
      if (this.#scheduling) this.pump();
      else if (this.#inFlight === 0) this.#allDone();
    });
  }

  #finish(now: number): void {
    this.#scheduling = false;
    this.result.scheduleMs = Math.max(0, now - this.t0);
    this.ticker?.stop();
    if (this.#inFlight === 0) this.#allDone();
  }
}

/** A rate as people write it: 50000 -> "50,000". */
function formatRate(rate: number): string {
  return Math.round(rate).toLocaleString("en-US");
}

function summarize(
  tally: Tally,
  run: { plan: BenchPlan; peers: Caller[]; elapsed: number; open?: OpenLoopResult },
): BenchSummary {
  const { plan, open } = run;
  const count = tally.latencies.length;
  const sorted = tally.latencies.sorted();
  let sum = 0;
  for (let i = 0; i < count; i++) sum += sorted[i];
  const summary: BenchSummary = {
    requests: tally.done,
    ok: count,
    errors: tally.errors,
    duration_s: round(run.elapsed / 1000),
    rps: Math.round(count / (run.elapsed / 1000)),
    latency_ms: {
      p50: round(quantile(sorted, 0.5)),
      p90: round(quantile(sorted, 0.9)),
      p99: round(quantile(sorted, 0.99)),
      p999: round(quantile(sorted, 0.999)),
      max: round(count ? sorted[count - 1] : 0),
      mean: round(count ? sum / count : 0),
    },
    ...tally.by.toJson(),
    concurrency: plan.concurrency,
    connections: run.peers.length,
  };
  if (open !== undefined) {
    const lags = open.lags.sorted();
    // One request has no interval: it is on time by definition.
    const achieved = open.started > 1 ? (open.started - 1) / (open.scheduleMs / 1000) : plan.rate!;
    summary.rate = plan.rate;
    summary.achieved_rate = Math.round(Math.min(achieved, plan.rate!));
    summary.start_lag_ms = {
      p50: round(quantile(lags, 0.5)),
      p99: round(quantile(lags, 0.99)),
      max: round(lags.length ? lags[lags.length - 1] : 0),
    };
    if (achieved < RATE_SHORTFALL * plan.rate! && tally.stopped === undefined) {
      summary.advice = open.slotWaits > 0
        ? `--concurrency ${plan.concurrency} was the limit: raise --concurrency`
        : "the client could not start requests that fast";
    }
  }
  if (tally.stopped !== undefined) summary.stopped = tally.stopped;
  return summary;
}

/** The human-readable report. */
export function formatSummary(s: BenchSummary): string[] {
  const l = s.latency_ms;
  const errs = Object.entries(s.errors);
  const failed = s.requests - s.ok;
  const conns = `${s.connections} connection${s.connections === 1 ? "" : "s"}`;
  const lines = [
    `${counted(s.requests, "request")} in ${
      s.duration_s.toFixed(2)
    } s, ${s.ok} ok: ${s.rps} req/s ` +
    `(concurrency ${s.concurrency} over ${conns})`,
    `latency ms${failed > 0 ? " (ok only)" : ""}: p50 ${l.p50}  p90 ${l.p90}  p99 ${l.p99}  ` +
    `p99.9 ${l.p999}  max ${l.max}  mean ${l.mean}`,
    `errors: ${errs.length === 0 ? "none" : errs.map(([c, n]) => `${c} ${n}`).join(", ")}`,
    `by: ${formatBy(new Map(Object.entries(s.by)), s.by_others)}`,
  ];
  if (s.rate !== undefined) {
    const lag = s.start_lag_ms!;
    lines.push(
      `rate: target ${formatRate(s.rate)}/s, achieved ${formatRate(s.achieved_rate!)}/s` +
        (s.advice ? `: ${s.advice}` : "") +
        `; start lag ms: p50 ${lag.p50}  p99 ${lag.p99}  max ${lag.max}`,
    );
  }
  if (s.stopped !== undefined) lines.push(`stopped: ${s.stopped}`);
  return lines;
}

/** A one-line progress bar for a terminal. */
export function progressLine(done: number, elapsedMs: number, total?: number, durationMs?: number) {
  const frac = total !== undefined && Number.isFinite(total)
    ? done / total
    : durationMs
    ? elapsedMs / durationMs
    : 0;
  const width = 30;
  const filled = Math.max(0, Math.min(width, Math.round(frac * width)));
  const rps = elapsedMs > 0 ? Math.round(done / (elapsedMs / 1000)) : 0;
  return `\r[${"#".repeat(filled)}${" ".repeat(width - filled)}] ${
    Math.min(100, Math.round(frac * 100))
  }% ${done} req ${rps} req/s `;
}
