/**
 * The roles' own counters and gauges, as Prometheus metrics: read at scrape
 * time from the same object `sys.stats` answers (one snapshot per scrape),
 * so counting costs the roles nothing more. Only totals and sizes: no label
 * per topic, client or backend, save the L4 balancer's backends (fixed by `--backends`).
 */
import type { Labels, Reading, Registry } from "./metrics.ts";

type Snapshot = Record<string, unknown>;

/** One metric read from a `sys.stats` snapshot. */
interface StatMetric {
  /** Dotted path in the snapshot (`retained.bytes`), or a function of it. */
  from: string | ((s: Snapshot) => Reading | undefined);
  kind: "counter" | "gauge";
  name: string;
  help: string;
  /** Multiplies the value (ms → s: 0.001). */
  scale?: number;
}

const c = (from: StatMetric["from"], name: string, help: string): StatMetric => ({
  from,
  kind: "counter",
  name,
  help,
});
const g = (from: StatMetric["from"], name: string, help: string, scale?: number): StatMetric => ({
  from,
  kind: "gauge",
  name,
  help,
  scale,
});

const BROKER: StatMetric[] = [
  g("subscriptions", "dist_broker_subscriptions", "Subscriptions now"),
  g("topics", "dist_broker_topics", "Topics known now"),
  g("topic_bytes", "dist_broker_topic_bytes", "Bytes of topic names held"),
  c("messages_in", "dist_broker_messages_received_total", "Messages published to the broker"),
  c("messages_out", "dist_broker_messages_delivered_total", "Deliveries queued to subscribers"),
  c("retained_sent", "dist_broker_retained_delivered_total", "Retained values sent on subscribe"),
  g("retained.count", "dist_broker_retained_topics", "Topics with a retained value"),
  g("retained.bytes", "dist_broker_retained_bytes", "Bytes of retained values"),
  g("retained.budget", "dist_broker_retained_budget_bytes", "Budget of retained bytes"),
  c("retained.evicted", "dist_broker_retained_evicted_total", "Retained values evicted"),
  c("retained.too_large", "dist_broker_retained_too_large_total", "Values too large to retain"),
  c("topics_evicted", "dist_broker_topics_evicted_total", "Topics forgotten for the topic budget"),
  c("dropped", "dist_broker_dropped_total", "Deliveries dropped (subscriber queue full)"),
  g("queued_bytes", "dist_broker_queued_bytes", "Bytes queued for subscribers"),
  c("slow_consumers", "dist_broker_slow_consumers_total", "Connections cut off as slow consumers"),
  c("bad_publishes", "dist_broker_bad_publishes_total", "Publishes refused (bad topic or value)"),
  c("undeliverable", "dist_broker_undeliverable_total", "Deliveries that could not be encoded"),
];

const REPLICATION = [
  "pushes",
  "pushed",
  "unsent",
  "received",
  "merged",
  "rejected",
  "bad_pushes",
  "rounds",
  "repaired",
];

const BINDER: StatMetric[] = [
  g(
    (s) => (s.ready ? 1 : 0),
    "dist_binder_ready",
    "1 once the binder has caught up with its peers",
  ),
  g("services", "dist_binder_services", "Services registered now"),
  g("instances", "dist_binder_instances", "Live instances registered now"),
  g("tombstones", "dist_binder_tombstones", "Removed instances remembered for replication"),
  ...[
    "registrations",
    "renewals",
    "removals",
    "expirations",
    "lookups",
    "merged",
    "stale",
    "skewed",
    "overflow",
    "verifications",
  ].map((k) => c(k, `dist_binder_${k}_total`, `Registry ${k}`)),
  g("verifying", "dist_binder_verifying", "Reported instances being verified now"),
  g("watchers", "dist_binder_watchers", "binder.watch subscriptions now"),
  c("notifications", "dist_binder_watch_notifications_total", "binder.changed notifications sent"),
  c("notifications_failed", "dist_binder_watch_failed_total", "binder.changed notifications lost"),
  g("clock_drift_ms", "dist_binder_clock_drift_seconds", "Clock drift seen in peers", 0.001),
  ...REPLICATION.map((k) =>
    c(`replication.${k}`, `dist_binder_replication_${k}_total`, `Replication ${k}`)
  ),
  g(
    (s) => {
      const peers = (s.replication as { peers?: { connected: boolean; self?: boolean }[] })?.peers;
      if (!Array.isArray(peers)) return undefined;
      const others = peers.filter((p) => !p.self);
      const up = others.filter((p) => p.connected).length;
      return [[{ state: "connected" }, up], [{ state: "disconnected" }, others.length - up]];
    },
    "dist_binder_replication_peers",
    "Replication peers by link state",
  ),
];

const BALANCER: StatMetric[] = [
  g("workers", "dist_balancer_workers", "Workers registered now"),
  // By state, not by backend: workers come and go under new names, and up to
  // --max-workers of them would each leave a series behind (balancer.backends lists each).
  // Under --threads, by thread too: each thread has its pool, the same servers in each.
  g(
    backendsByState,
    "dist_balancer_backends",
    "Backends known (servers and workers), by state: up (in rotation) or down " +
      "(under --threads, by thread: each has its own)",
  ),
  c("checks_failed", "dist_balancer_health_checks_failed_total", "Health checks missed (sys.ping)"),
  g("queued", "dist_balancer_queued_requests", "Requests waiting for a backend"),
  g("queued_bytes", "dist_balancer_queued_bytes", "Bytes of requests waiting for a backend"),
  c("requests", "dist_balancer_forwarded_total", "Requests taken for forwarding"),
  c("retries", "dist_balancer_retries_total", "Forwarding retries on another backend"),
  c("overloaded", "dist_balancer_overloaded_total", "Requests refused: queue full"),
  c("expired", "dist_balancer_expired_total", "Requests that waited past their deadline"),
  c("lost", "dist_balancer_lost_total", "Requests lost with their backend"),
];

/** `backends` by state (`healthy` of them up), per thread under `--threads` (each has its pool). */
function backendsByState(s: Snapshot): Reading | undefined {
  if (typeof s.backends !== "number" || typeof s.healthy !== "number") return undefined;
  const thread: Labels = typeof s.thread === "number" ? { thread: String(s.thread) } : {};
  return [
    [{ state: "up", ...thread }, s.healthy],
    [{ state: "down", ...thread }, s.backends - s.healthy],
  ];
}

/** One figure of each backend of an L4 balancer (`servers`: fixed by --backends, so bounded). */
function perServer(key: string): (s: Snapshot) => Reading | undefined {
  return (s) => {
    const list = s.servers as { address: string; [k: string]: unknown }[] | undefined;
    if (!Array.isArray(list)) return undefined;
    return list.map((b) => [{ backend: b.address }, Number(b[key])] as const);
  };
}

/**
 * The L4 mode's (`--mode tcp`, roles/balancer/tcp/proxy.ts stats()): client connections as
 * the RPC ports count theirs (`dist_connections*`), and each backend's (after HAProxy's
 * `haproxy_server_*` and Envoy's `upstream_cx_*`).
 */
const BALANCER_TCP: StatMetric[] = [
  g("connections", "dist_connections", "Client connections open now (dialing or passing bytes)"),
  c("connections_total", "dist_connections_opened_total", "Client connections accepted"),
  c(
    (s) => {
      const l = s.connection_limits as Record<string, number> | undefined;
      if (l === undefined) return undefined;
      return [
        [{ bound: "limit" }, l.refused_full],
        [{ bound: "source" }, l.refused_source],
        [{ bound: "descriptors" }, Number(s.refused_descriptors)],
      ];
    },
    "dist_connections_refused_total",
    "Client connections refused at accept, by bound: limit (--max-connections), source " +
      "(--max-connections-per-source, or its share while full) or descriptors (ulimit -n)",
  ),
  c(
    (s) => {
      const l = s.connection_limits as Record<string, number> | undefined;
      if (l === undefined) return undefined;
      return [[{ why: "no_byte" }, l.closed_no_hello], [{ why: "source" }, l.closed_source]];
    },
    "dist_connections_closed_for_room_total",
    "Client connections closed to make room for a new one at --max-connections, by why: " +
      "no_byte (none sent yet) or source (of a source holding more than its share)",
  ),
  c(
    (s) => [
      [{ why: "no_backend" }, Number(s.no_backend)],
      [{ why: "descriptors" }, Number(s.no_dial_descriptor)],
    ],
    "dist_balancer_unserved_connections_total",
    "Client connections closed without a backend, by why: no_backend (none up, and every " +
      "one out refused it) or descriptors (none left to dial one)",
  ),
  c("connect_failures", "dist_balancer_connect_failures_total", "Backend connects that failed"),
  c("received_bytes", "dist_received_bytes_total", "Bytes read from client connections"),
  c("sent_bytes", "dist_sent_bytes_total", "Bytes written to client connections"),
  g(backendsByState, "dist_balancer_backends", "Backends, by state: up (in rotation) or down"),
  c("checks_failed", "dist_balancer_health_checks_failed_total", "Health checks failed (connects)"),
  g(perServer("up"), "dist_balancer_backend_up", "1 while the backend is up (in rotation), else 0"),
  g(
    perServer("connections"),
    "dist_balancer_backend_connections",
    "Connections to the backend open now (dialing or passing bytes)",
  ),
  c(
    perServer("connections_total"),
    "dist_balancer_backend_connections_total",
    "Connections made to the backend",
  ),
  c(
    perServer("connect_failures"),
    "dist_balancer_backend_connect_failures_total",
    "Connects to the backend that failed (refused or timed out)",
  ),
  c(perServer("sent_bytes"), "dist_balancer_backend_sent_bytes_total", "Bytes sent to the backend"),
  c(
    perServer("received_bytes"),
    "dist_balancer_backend_received_bytes_total",
    "Bytes received from the backend",
  ),
];

const BY_ROLE: Readonly<Record<string, readonly StatMetric[]>> = {
  broker: BROKER,
  binder: BINDER,
  balancer: BALANCER,
  "balancer-tcp": BALANCER_TCP,
};

function at(snapshot: Snapshot, path: string): unknown {
  let v: unknown = snapshot;
  for (const key of path.split(".")) {
    if (typeof v !== "object" || v === null || !Object.hasOwn(v, key)) return undefined;
    v = (v as Snapshot)[key];
  }
  return v;
}

/**
 * Declares the metrics of `role` read from `stats()` (the role's part of
 * `sys.stats`), taken once per scrape.
 */
export function roleStatMetrics(registry: Registry, role: string, stats: () => Snapshot): void {
  const table = Object.hasOwn(BY_ROLE, role) ? BY_ROLE[role] : [];
  if (table.length === 0) return;
  let snapshot: Snapshot = {};
  registry.beforeScrape(() => snapshot = stats());
  for (const m of table) {
    registry.read(m.kind, m.name, m.help, () => {
      const v = typeof m.from === "string" ? at(snapshot, m.from) : m.from(snapshot);
      if (typeof v === "number") return v * (m.scale ?? 1);
      return v === undefined || typeof v !== "object" ? NaN : v as Reading;
    });
  }
}
