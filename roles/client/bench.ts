import { DistError, type Peer } from "../../wire/mod.ts";
import { formatBy, round } from "./_common.ts";
import type { Operation } from "../ops.ts";

/** The numbers a benchmark run ends with. */
export interface BenchSummary {
  requests: number;
  ok: number;
  errors: Record<string, number>;
  duration_s: number;
  rps: number;
  latency_ms: { p50: number; p90: number; p99: number; p999: number; max: number; mean: number };
  by: Record<string, number>;
  concurrency: number;
  connections: number;
  rate?: number;
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

/** Reads a value at quantile q of sorted latencies. */
function quantile(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)];
}

/**
 * Runs a closed-loop benchmark (`concurrency` requests always in flight,
 * spread over `peers`) or, with `rate`, an open-loop one where requests start
 * on a fixed schedule whatever the latency, so slow answers cannot hide
 * behind fewer requests (no coordinated omission).
 */
export async function runBench(peers: Peer[], plan: BenchPlan): Promise<BenchSummary> {
  const limit = plan.requests ?? Infinity;
  const endAt = plan.durationMs !== undefined ? performance.now() + plan.durationMs : Infinity;
  let latencies = new Float64Array(Number.isFinite(limit) ? limit : 1 << 16);
  let count = 0;
  const errors: Record<string, number> = {};
  const by = new Map<string, number>();
  let started = 0;
  const t0 = performance.now();

  const record = (ms: number, by_: string | undefined, code: string | undefined) => {
    if (count === latencies.length) {
      const grown = new Float64Array(latencies.length * 2);
      grown.set(latencies);
      latencies = grown;
    }
    latencies[count++] = ms;
    if (code !== undefined) errors[code] = (errors[code] ?? 0) + 1;
    else if (by_ !== undefined) by.set(by_, (by.get(by_) ?? 0) + 1);
  };

  const progress = plan.onProgress
    ? setInterval(() => plan.onProgress!(count, performance.now() - t0), 200)
    : undefined;

  const one = async (peer: Peer, scheduled: number) => {
    try {
      const res = await peer.request(plan.op.method, plan.op.params, { timeout: plan.timeout });
      record(performance.now() - scheduled, res.by, undefined);
    } catch (err) {
      record(performance.now() - scheduled, undefined, DistError.from(err).code);
    }
  };

  try {
    if (plan.rate === undefined) {
      // The hot loop: one await per request, no wrapper promise.
      const { method, params } = plan.op;
      const callOptions = { timeout: plan.timeout };
      await Promise.all(Array.from({ length: plan.concurrency }, async (_, i) => {
        const peer = peers[i % peers.length];
        let now = performance.now();
        while (started < limit && now < endAt && !plan.signal?.aborted) {
          started++;
          const sent = now;
          try {
            const res = await peer.request(method, params, callOptions);
            now = performance.now();
            record(now - sent, res.by, undefined);
          } catch (err) {
            now = performance.now();
            record(now - sent, undefined, DistError.from(err).code);
          }
        }
      }));
    } else {
      await openLoop(peers, plan, limit, endAt, one);
    }
  } finally {
    clearInterval(progress);
  }
  const elapsed = performance.now() - t0;
  plan.onProgress?.(count, elapsed);
  const sorted = latencies.subarray(0, count).sort();
  let sum = 0;
  for (let i = 0; i < count; i++) sum += sorted[i];
  const errorCount = Object.values(errors).reduce((a, b) => a + b, 0);
  return {
    requests: count,
    ok: count - errorCount,
    errors,
    duration_s: round(elapsed / 1000),
    rps: Math.round(count / (elapsed / 1000)),
    latency_ms: {
      p50: round(quantile(sorted, 0.5)),
      p90: round(quantile(sorted, 0.9)),
      p99: round(quantile(sorted, 0.99)),
      p999: round(quantile(sorted, 0.999)),
      max: round(count ? sorted[count - 1] : 0),
      mean: round(count ? sum / count : 0),
    },
    by: Object.fromEntries(by),
    concurrency: plan.concurrency,
    connections: peers.length,
    ...(plan.rate !== undefined ? { rate: plan.rate } : {}),
  };
}

/**
 * Starts request i at t0 + i/rate. At most `concurrency` are in flight; a
 * request that must wait for a free slot still counts its latency from its
 * scheduled time.
 */
async function openLoop(
  peers: Peer[],
  plan: BenchPlan,
  limit: number,
  endAt: number,
  one: (peer: Peer, scheduled: number) => Promise<void>,
): Promise<void> {
  const rate = plan.rate!;
  const t0 = performance.now();
  let i = 0;
  let inFlight = 0;
  let slotFreed: (() => void) | undefined;
  const running = new Set<Promise<void>>();
  while (i < limit && !plan.signal?.aborted) {
    const scheduled = t0 + (i * 1000) / rate;
    if (scheduled >= endAt) break;
    const now = performance.now();
    if (scheduled > now) {
      await new Promise((r) => setTimeout(r, Math.max(0, scheduled - now)));
    }
    while (inFlight >= plan.concurrency) {
      await new Promise<void>((r) => slotFreed = r);
    }
    inFlight++;
    const p = one(peers[i % peers.length], scheduled).finally(() => {
      inFlight--;
      running.delete(p);
      slotFreed?.();
      slotFreed = undefined;
    });
    running.add(p);
    i++;
  }
  await Promise.all(running);
}

/** The human-readable report. */
export function formatSummary(s: BenchSummary): string[] {
  const l = s.latency_ms;
  const errs = Object.entries(s.errors);
  return [
    `${s.requests} requests in ${s.duration_s.toFixed(2)} s: ${s.rps} req/s ` +
    `(concurrency ${s.concurrency} over ${s.connections} connection(s)` +
    (s.rate !== undefined ? `, rate ${s.rate}/s` : "") + ")",
    `latency ms: p50 ${l.p50}  p90 ${l.p90}  p99 ${l.p99}  p99.9 ${l.p999}  max ${l.max}  mean ${l.mean}`,
    `errors: ${errs.length === 0 ? "none" : errs.map(([c, n]) => `${c} ${n}`).join(", ")}`,
    `by: ${formatBy(new Map(Object.entries(s.by)))}`,
  ];
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
