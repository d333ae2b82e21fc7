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
/** The lag gauge's window: the worst lag of the last this many seconds (s). */
const LAG_WINDOW_S = 60;
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
  // The worst lag of each of the last LAG_WINDOW_S seconds (a ring), and the sum of every lag:
  // no scrape changes what the next one sees (hostile h48 P18: a scrape reset the worst, so a
  // second scraper, or a curl, took a stall from the first).
  const worst = new Float64Array(LAG_WINDOW_S);
  const second = new Float64Array(LAG_WINDOW_S).fill(-1);
  let total = 0;
  let expected = performance.now() + LAG_SAMPLE_MS;
  let ticks = 0;
  const timer = setInterval(() => {
    // The hot paths' samplers time their next event once a second (a rate that fell shows).
    if (++ticks % NUDGE_TICKS === 0) registry.nudge();
    const now = performance.now();
    const lag = Math.max(0, now - expected) / 1000;
    expected = now + LAG_SAMPLE_MS;
    total += lag;
    const s = Math.floor(now / 1000);
    const i = s % LAG_WINDOW_S;
    if (second[i] !== s) [second[i], worst[i]] = [s, 0];
    if (lag > worst[i]) worst[i] = lag;
  }, LAG_SAMPLE_MS);
  Deno.unrefTimer(timer);
  registry.read(
    "gauge",
    "dist_event_loop_lag_seconds",
    `Longest delay of a ${LAG_SAMPLE_MS} ms timer in the last ${LAG_WINDOW_S} s, in seconds`,
    () => {
      const from = Math.floor(performance.now() / 1000) - LAG_WINDOW_S;
      let max = 0;
      for (let i = 0; i < LAG_WINDOW_S; i++) if (second[i] > from && worst[i] > max) max = worst[i];
      return max;
    },
  );
  registry.read(
    "counter",
    "dist_event_loop_late_seconds_total",
    `Sum of the delays of a ${LAG_SAMPLE_MS} ms timer, in seconds (its rate: the share of time late)`,
    () => total,
  );
  return () => clearInterval(timer);
}
