/**
 * Metrics every dist process has: the standard `process_*` ones (resident
 * memory, CPU seconds, start time), event-loop lag, and `dist_info` with
 * the role and name. The lag is sampled by one unref'd timer, so it never
 * keeps a process alive.
 */
// node:process is loaded only when metrics are asked for: once loaded it
// changes how a signal arriving before the role's own handlers is taken.
let cpuUsage: (() => { user: number; system: number }) | undefined;

/** Loads what CPU time is read with; call before {@link processMetrics}. */
export async function loadCpuUsage(): Promise<void> {
  cpuUsage ??= (await import("node:process")).default.cpuUsage;
}
import type { Registry } from "./metrics.ts";

/** How often the event loop's lag is sampled (ms). */
const LAG_SAMPLE_MS = 100;
/** Lag samples between two nudges of the registry's samplers (one a second). */
const NUDGE_TICKS = 10;

/** Declares the process metrics on `registry`; returns what stops the lag sampler. */
export function processMetrics(
  registry: Registry,
  self: () => { role: string; name: string; version: string },
): () => void {
  const startSeconds = Date.now() / 1000 - performance.now() / 1000;
  registry.read(
    "gauge",
    "dist_info",
    "This process's role, name and version (always 1)",
    () => [[self(), 1]],
  );
  registry.read(
    "gauge",
    "process_resident_memory_bytes",
    "Resident memory size in bytes",
    () => Deno.memoryUsage().rss,
  );
  registry.read(
    "counter",
    "process_cpu_seconds_total",
    "User and system CPU time in seconds",
    () => {
      const { user, system } = process.cpuUsage();
      return (user + system) / 1e6;
    },
  );
  registry.read(
    "gauge",
    "process_start_time_seconds",
    "Start time of the process since the Unix epoch in seconds",
    () => Math.round(startSeconds),
  );
  // The worst lag since the last scrape, and the one before it when no
  // sample ran since (a scrape right after another still says something).
  let worst = 0;
  let last = 0;
  let expected = performance.now() + LAG_SAMPLE_MS;
  let ticks = 0;
  const timer = setInterval(() => {
    // The hot paths' samplers time their next event once a second (a rate that fell shows).
    if (++ticks % NUDGE_TICKS === 0) registry.nudge();
    const now = performance.now();
    const lag = Math.max(0, now - expected) / 1000;
    expected = now + LAG_SAMPLE_MS;
    if (lag > worst) worst = lag;
  }, LAG_SAMPLE_MS);
  Deno.unrefTimer(timer);
  registry.read(
    "gauge",
    "dist_event_loop_lag_seconds",
    `Longest delay of a ${LAG_SAMPLE_MS} ms timer since the last scrape, in seconds`,
    () => {
      if (worst > 0) [last, worst] = [worst, 0];
      return last;
    },
  );
  return () => clearInterval(timer);
}
