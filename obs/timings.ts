/**
 * The latency histograms roles observe at one seam each, only when
 * `--metrics` is given (the role holds the cell, or nothing):
 *
 * - the balancer: a forwarded request's time through it, from its taking to
 *   the backend's answer (queueing, retries and the backend included, both
 *   the decoded and the byte pass-through path);
 * - the broker: a publish's fan-out, from its taking to its last delivery
 *   handed to a subscriber's connection or queued for it (one publish in 8:
 *   the two clock reads would cost more than the rest of the metrics);
 * - the binder: replication lag, from a change's stamp at the binder that
 *   made it to its merge here (clocks are checked against each other; a
 *   change repaired by anti-entropy shows how late it came).
 */
import { type HistogramCell, LATENCY_BUCKETS, type Registry } from "./metrics.ts";

/**
 * The hot paths time one event in 8 (a served request, a publish): a clock
 * read costs about 0.1 µs in Deno, two of them more than the rest of the
 * counting. The count is kept in full by the matching counter; the
 * histogram's `_count` is about one eighth of it. Sample with
 * `(n++ & SAMPLE_MASK) === 0` (the first is timed) or `(++n & SAMPLE_MASK) === 0`.
 */
export const SAMPLE_EVERY = 8;
/** `SAMPLE_EVERY - 1`, a power of two less one. */
export const SAMPLE_MASK = SAMPLE_EVERY - 1;

/** Bucket bounds (seconds) for replication lag: 1 ms to 5 minutes. */
export const LAG_BUCKETS: readonly number[] = [
  0.001,
  0.005,
  0.01,
  0.05,
  0.1,
  0.5,
  1,
  5,
  10,
  30,
  60,
  300,
];

/** `dist_balancer_forward_duration_seconds`. */
export function forwardLatency(registry: Registry): HistogramCell {
  return registry.histogram(
    "dist_balancer_forward_duration_seconds",
    "Time of a forwarded request through the balancer, from its taking to its backend's answer",
  ).cell();
}

/** `dist_broker_publish_delivery_seconds`. */
export function deliveryLatency(registry: Registry): HistogramCell {
  return registry.histogram(
    "dist_broker_publish_delivery_seconds",
    `Time from a publish's taking to its last delivery handed to a subscriber's connection or queue (one publish in ${SAMPLE_EVERY} is timed)`,
  ).cell();
}

/** `dist_binder_replication_lag_seconds`. */
export function replicationLag(registry: Registry): HistogramCell {
  return registry.histogram(
    "dist_binder_replication_lag_seconds",
    "Time from a change at the binder that made it to its merge here",
    LAG_BUCKETS,
  ).cell();
}

export { LATENCY_BUCKETS };
