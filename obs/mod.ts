/**
 * @module
 * Observability: Prometheus metrics (`--metrics HOST:PORT`), below the
 * roles and the launcher, which both use it.
 *
 * - `metrics.ts`: the registry (counters, gauges, histograms; readings
 *   taken at scrape time), the text format, and the sampler that picks
 *   which events of a hot path are timed.
 * - `process.ts`: `process_*`, event-loop lag and `dist_info`.
 * - `rpc.ts`: what the listening roles' shell counts at its dispatch and
 *   connection seams (requests by class and code, latency, bytes).
 * - `role_stats.ts`: the roles' `sys.stats` counters as metrics.
 * - `timings.ts`: the histograms a role observes at one seam (the balancer's
 *   forwarding, the broker's fan-out, the binder's replication lag).
 * - `dialers.ts`: the client's requests, the producer's, consumer's and
 *   worker's counters.
 * - `serve.ts`: the HTTP endpoint.
 * - `http_guarded.ts` (with `http_conn.ts`, one connection and its
 *   request header): the small HTTP/1.1 server of the metrics port and the
 *   dashboard, bounded in connections and in time for a request header
 *   (`parseHead` also reads the MQTT WebSocket port's upgrade request).
 */
import { Registry } from "./metrics.ts";
import { processMetrics } from "./process.ts";
import { type MetricsServer, serveMetrics } from "./serve.ts";
import denoJson from "../deno.json" with { type: "json" };

export {
  Cell,
  CellFamily,
  HistogramCell,
  HistogramFamily,
  type Labels,
  LATENCY_BUCKETS,
  type Reading,
  Registry,
  SAMPLE_GAP_MS,
  Sampler,
  type SampleSet,
} from "./metrics.ts";
export { RpcMetrics } from "./rpc.ts";
export { loadCpuUsage } from "./process.ts";
export { roleStatMetrics } from "./role_stats.ts";
export {
  deliveryLatency,
  forwardLatency,
  LAG_BUCKETS,
  replicationLag,
  SampledCell,
} from "./timings.ts";
export { type CallerLike, countCalls, type DialerCounters, dialerCounters } from "./dialers.ts";
export { METRICS_CONTENT_TYPE, MetricsBindError, type MetricsServer } from "./serve.ts";

/** The metrics of one process: its registry and, when asked for, its endpoint. */
export class ProcessMetrics {
  readonly registry: Registry = new Registry();
  /** The instance's name in `dist_info` (settled late when a port 0 names it). */
  name: string;
  readonly role: string;
  readonly #stopLag: () => void;
  #server?: MetricsServer;

  /**
   * @param process with the process's own metrics (`process_*`, `dist_info`, the event loop's
   *   lag): not for a `--threads` worker thread's, whose samples thread 0 adds to its own
   */
  constructor(role: string, name: string, process = true) {
    this.role = role;
    this.name = name;
    if (process) {
      this.#stopLag = processMetrics(
        this.registry,
        () => ({ role, name: this.name, version: denoJson.version }),
      );
    } else {
      // The samplers' nudge, as the lag sampler gives it (once a second).
      const timer = setInterval(() => this.registry.nudge(), 1000);
      Deno.unrefTimer(timer);
      this.#stopLag = () => clearInterval(timer);
    }
  }

  /**
   * Serves the registry at `http://host:port/metrics`.
   * @throws {MetricsBindError} when the address cannot be had
   */
  serve(address: { host: string; port: number }): MetricsServer {
    return this.#server = serveMetrics(address, this.registry);
  }

  /** The endpoint's address, once serving. */
  get addr(): { hostname: string; port: number } | undefined {
    return this.#server?.addr;
  }

  /** Stops the endpoint and the lag sampler. */
  async close(): Promise<void> {
    this.#stopLag();
    await this.#server?.close();
  }
}
