/**
 * @module
 * `dist up` and `dist status`: a whole topology from copies of this
 * executable.
 *
 * - `plan.ts`: pure: which instances run here (`--only`, `--on`), what each
 *   waits for (its references), start order, cycles, command lines.
 * - `waits.ts`: what an instance waits for: references, the waits a
 *   topology implies (a balancer's workers, a service's servers, a broker's
 *   consumers), and the log lines that say a role is ready.
 * - `supervisor.ts`: runs a plan: spawns, waits for readiness, restarts by
 *   policy (`restart.ts`: backoff, crash loops); `readiness.ts`: when a
 *   process is ready (its ready line, its `sys.ping`), its output on the
 *   way; `stopping.ts`: stops in reverse start order, or kills all;
 *   `unit.ts`: one instance as it runs, and the verdict (exit code);
 *   `ports.ts`: whether an instance's fixed ports are free before it starts.
 * - `output.ts`: children's lines prefixed with their names, in colour;
 *   `output_queue.ts`: written without blocking, bounded (drops counted).
 * - `probe.ts`: `sys.ping` / `sys.stats` over one short connection.
 * - `self.ts`: how to start a copy of this executable, compiled or from
 *   source, and how a copy notices its launcher is gone.
 * - `state.ts`: the file a running `dist up` keeps for `dist status`
 *   (and tells its watchers of every change); `metrics.ts`: the launcher's
 *   Prometheus metrics, read from it.
 * - `observe/`: `sys.stats` of every instance over kept connections while
 *   someone watches, rates, the cluster's view (health, last minutes, edges).
 * - `dashboard/`: the live web page `dist up` serves of its cluster.
 * - `args.ts`: the two commands' flags and help.
 * - `up.ts`, `status.ts`: the two commands; `status_watch.ts`: `dist status
 *   --watch`, the table redrawn in place with rates.
 */
export { up } from "./up.ts";
export { status } from "./status.ts";
export { watchLauncher } from "./self.ts";
// For `dist export` (export/): the plan and the command-line helpers it shares.
export { listens, makePlan, type Plan, type PlannedInstance, sameHost } from "./plan.ts";
export { clusterCa, hostsOf as tlsHostsOf } from "./tls.ts";
export { dirProblem, topologyKey } from "./state.ts";
export { readTopology } from "./up.ts";
export { type CommandInfo, formatLauncherHelp, parseLauncherArgs } from "./args.ts";
export { writeStdoutQuietly } from "./output.ts";
