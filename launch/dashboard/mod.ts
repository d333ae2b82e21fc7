/**
 * @module
 * The live dashboard of `dist up`: a web page of the cluster it runs, served
 * by the launcher itself (on 127.0.0.1:8090 by default; `--dashboard
 * HOST:PORT` moves it, `--no-dashboard` turns it off).
 *
 * - `server.ts`: HTTP: the page, `/api/cluster`, `/api/stats/NAME`, and the
 *   event stream `/events` that pushes every change;
 * - `assets.ts`: the page's files and uPlot, embedded as modules;
 * - `page.html`, `page.css`, `page.js`: the page (no framework): the
 *   topology as a graph, a card and a chart per instance, sys.stats on click.
 *
 * What it shows comes from launch/observe/ (the same view `dist status
 * --watch` prints).
 */
import type { Registry } from "../../obs/mod.ts";
import { launcherCredentials } from "../secrets.ts";
import { launcherTls } from "../tls.ts";
import { type Instance, parseAddress, UsageError } from "../../config/mod.ts";
import { ClusterView, StatsPoller, type ViewInstance } from "../observe/mod.ts";
import { addressOf, type Plan } from "../plan.ts";
import type { StateWriter } from "../state.ts";
import { Dashboard } from "./server.ts";

export { allowedHost, Dashboard, type DashboardInfo, type DashboardOptions } from "./server.ts";
export { ASSETS } from "./assets.ts";

/** Where the dashboard listens unless told otherwise (a free port when this one is taken). */
export const DEFAULT_DASHBOARD = "127.0.0.1:8090";
/**
 * Time between two polls of every instance while a page is open (ms): just
 * under the wire's heartbeat (1 s), so that each poll and its answer are the
 * kept connection's heartbeats and neither side ever sends a ping. Polling
 * less often would not cost the instances less: pings would take the polls'
 * place (a kept connection carries a message each way every second anyway),
 * and each message wakes a process (measured in bench/dashboard.ts).
 */
export const POLL_INTERVAL_MS = 950;
/** Bound of one poll of one instance (ms): under the interval, so rounds keep their pace. */
export const POLL_TIMEOUT_MS = 900;

/** A running dashboard, as `dist up` holds it. */
export interface OpenDashboard {
  url: string;
  view: ClusterView;
  /** Said once when the default port was taken and another was used. */
  note?: string;
  close(): Promise<void>;
}

/** How {@link openDashboard} opens. */
export interface OpenOptions {
  /** Where to listen (`--dashboard HOST:PORT`, or {@link DEFAULT_DASHBOARD}). */
  address: string;
  /** When that port is taken, take a free one (true for the default address). */
  fallback?: boolean;
  /** Every instance of the topology by name (a remote dependency's references). */
  byName: Map<string, Instance>;
  /** The launcher's state, which the view follows. */
  state: StateWriter;
  /** The launcher's metrics, served at `/metrics`. */
  metrics?: Registry;
  /** Says that the server failed (it serves again by itself). */
  warn?: (message: string) => void;
}

/** The view of a plan: its instances and the remote ones they wait for. */
export function planView(plan: Plan, byName: Map<string, Instance>): ClusterView {
  let view: ClusterView | undefined = undefined;
  const specs: ViewInstance[] = [
    ...plan.instances.map((p) => ({
      name: p.instance.name,
      role: p.instance.role,
      ...(p.listens ? { address: addressOf(p.instance) } : {}),
      refs: p.instance.refs,
    })),
    ...plan.remote.map((r) => ({
      name: r.name,
      role: r.role,
      address: r.address,
      refs: byName.get(r.name)?.refs ?? {},
      remote: true,
    })),
  ];
  const poller = new StatsPoller(
    specs.filter((s) => s.address !== undefined).map((s) => ({
      name: s.name,
      address: () => view?.addressOf(s.name),
      credentials: launcherCredentials(byName.get(s.name)),
      tls: launcherTls(byName.get(s.name)),
    })),
    { intervalMs: POLL_INTERVAL_MS, timeoutMs: POLL_TIMEOUT_MS },
  );
  view = new ClusterView(plan.file, specs, { poller });
  return view;
}

/**
 * Opens the dashboard of `plan`: the view follows the launcher's state and
 * the server listens.
 *
 * @throws {UsageError} when the address is not HOST:PORT
 * @throws {Deno.errors.AddrInUse} (or another bind error) when it cannot
 *   listen there and may not fall back
 */
export function openDashboard(plan: Plan, options: OpenOptions): OpenDashboard {
  const text = options.address;
  let where: { host: string; port: number };
  try {
    where = parseAddress(text);
  } catch (err) {
    throw new UsageError(`--dashboard ${text}: ${(err as Error).message}`);
  }
  const view = planView(plan, options.byName);
  for (const [name, s] of Object.entries(options.state.state.instances)) view.setState(name, s);
  const stopFollowing = options.state.onUpdate((name, s) => view.setState(name, s));
  const info = {
    file: plan.file,
    pid: Deno.pid,
    started_ms: options.state.state.started_ms,
    steps: Object.fromEntries(plan.instances.map((p) => [p.instance.name, p.step])),
  };
  const serve = (port: number) =>
    new Dashboard({
      hostname: where.host,
      port,
      view,
      info,
      maxClients: 32,
      ...(options.warn === undefined ? {} : { warn: options.warn }),
      ...(options.metrics === undefined ? {} : { metrics: options.metrics }),
    });
  let dashboard: Dashboard;
  let note: string | undefined;
  try {
    dashboard = serve(where.port);
  } catch (err) {
    if (!options.fallback || !(err instanceof Deno.errors.AddrInUse)) {
      stopFollowing();
      // A run-time failure (exit 1), as a port an instance needs that is taken.
      // Same class (Deno.errors.AddrInUse …), so main.ts prints it as one line.
      const Kind = err instanceof Error ? err.constructor as ErrorConstructor : Error;
      throw new Kind(`Cannot serve the dashboard on ${text}: ${(err as Error).message}`, {
        cause: err,
      });
    }
    dashboard = serve(0);
    note = `${text} is in use: the dashboard takes a free port`;
  }
  options.state.set({ dashboard: dashboard.url });
  return {
    url: dashboard.url,
    view,
    ...(note === undefined ? {} : { note }),
    close: async () => {
      stopFollowing();
      await dashboard.close();
      await view.poller.close();
    },
  };
}
