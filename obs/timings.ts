/**
 * The latency histograms roles observe at one seam each, only when
 * `--metrics` is given (the role holds the cell, or nothing):
 *
 * - the balancer: a forwarded request's time through it, from its taking to
 *   the backend's answer (queueing, retries and the backend included, both
 *   the decoded and the byte pass-through path);
 * - the broker: a publish's fan-out, from its taking to its last delivery
 *   handed to a subscriber's connection or queued for it (a sample of
 *   publishes, see {@link Sampler});
 * - the binder: replication lag, from a change's stamp at the binder that
 *   made it to its merge here (clocks are checked against each other; a
 *   change repaired by anti-entropy shows how late it came).
 */
import { type HistogramCell, LATENCY_BUCKETS, type Registry, Sampler } from "./metrics.ts";

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

/** A histogram cell fed a sample of events: `take()` says which to time. */
export class SampledCell extends Sampler {
  readonly #cell: HistogramCell;
  constructor(cell: HistogramCell) {
    super();
    this.#cell = cell;
  }
  /** Records one timed event's duration, in seconds. */
  observe(seconds: number): void {
    this.#cell.observe(seconds);
  }
}

/** `dist_broker_publish_delivery_seconds`, timed for a sample of publishes. */
export function deliveryLatency(registry: Registry): SampledCell {
  return registry.track(
    new SampledCell(
      registry.histogram(
        "dist_broker_publish_delivery_seconds",
        "Time from a publish's taking to its last delivery handed to a subscriber's connection or queue (a sample: every publish while they come more than 2 ms apart, one per 2 to 4 ms above that)",
      ).cell(),
    ),
  );
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
