/**
 * The launcher's own metrics: what `dist up` knows of its instances, read at
 * scrape time from its state (launch/state.ts), so supervising costs
 * nothing more. Served at the dashboard's `/metrics` and, with `dist up
 * --metrics HOST:PORT`, at that address. One label set per instance of the
 * plan: bounded by the topology (`--max-instances`), never by traffic.
 */
import { ProcessMetrics } from "../obs/mod.ts";
import type { InstanceState, StateWriter } from "./state.ts";

/** States in which an instance's process runs and is ready (or needs no readiness). */
const UP = new Set(["ready", "running"]);

/** Every state an instance may be in (launch/state.ts), each a sample of `dist_launcher_instances`. */
const STATES = [
  "waiting",
  "starting",
  "ready",
  "running",
  "backoff",
  "exited",
  "stopping",
  "stopped",
];

/** The launcher's registry, its readings declared. */
export function launcherMetrics(state: StateWriter): ProcessMetrics {
  const metrics = new ProcessMetrics("launcher", "dist up");
  const { registry } = metrics;
  const each = (value: (s: InstanceState) => number) => () =>
    Object.entries(state.state.instances).map(([name, s]) =>
      [{ instance: name, role: s.role }, value(s)] as const
    );
  registry.read(
    "gauge",
    "dist_launcher_instance_up",
    "1 while the instance's process runs and is ready, else 0",
    each((s) => UP.has(s.state) ? 1 : 0),
  );
  registry.read(
    "counter",
    "dist_launcher_instance_restarts_total",
    "Times the launcher started the instance again",
    each((s) => s.restarts),
  );
  registry.read(
    "gauge",
    "dist_launcher_instance_start_time_seconds",
    "When the instance's current process started (Unix time; 0 when none runs)",
    each((s) => s.started_ms === undefined ? 0 : s.started_ms / 1000),
  );
  registry.read("gauge", "dist_launcher_instances", "Instances by state", () => {
    const counts = new Map(STATES.map((s) => [s, 0]));
    for (const s of Object.values(state.state.instances)) {
      counts.set(s.state, (counts.get(s.state) ?? 0) + 1);
    }
    return [...counts].map(([s, n]) => [{ state: s }, n] as const);
  });
  return metrics;
}
