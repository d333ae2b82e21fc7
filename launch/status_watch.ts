/**
 * `dist status --watch`: the table of `dist status`, with each instance's
 * key rate, refreshed in place every `--interval` until Ctrl-C. The
 * instances are polled over kept connections (observe/); what only the
 * launcher knows (pid, restarts) is read again from the state files each
 * round. On a terminal each table replaces the last (cursor home, each line
 * cleared, the rest of the screen cleared: no flicker, and the last table
 * stays on screen after Ctrl-C); into a pipe, tables follow each other,
 * each after a blank line; with `--json`, one object per instance a round.
 */
import { launcherCredentials } from "./secrets.ts";
import { launcherTls } from "./tls.ts";
import type { Instance, RoleInfo, Topology } from "../config/mod.ts";
import { ClusterView, formatRate, type InstanceView, StatsPoller } from "./observe/mod.ts";
import { addressOf, listens } from "./plan.ts";
import { readStates } from "./state.ts";
import { formatStatusTable, type StatusRow } from "./status.ts";

/** How {@link watchStatus} runs. */
export interface WatchOptions {
  roles: Record<string, RoleInfo>;
  /** The state files' name of the topology (see topologyKey). */
  key: string;
  intervalMs: number;
  timeoutMs: number;
  json: boolean;
  /** Whether output is a terminal (redraw in place); default: stdout is one. */
  terminal?: boolean;
  /** The terminal's width, when known (lines are cut to it). */
  columns?: () => number | undefined;
  /** Where text goes; throwing (a closed pipe) ends the watch. Default: stdout. */
  write?: (text: string) => void;
  /** Ends the watch (default: SIGINT or SIGTERM). */
  signal?: AbortSignal;
}

const HOME = "\x1b[H";
const CLEAR_LINE = "\x1b[K";
const CLEAR_BELOW = "\x1b[J";
const CLEAR_SCREEN = "\x1b[2J";

/** The view of a topology's instances, polled by a {@link StatsPoller}. */
export function viewOf(
  topology: Topology,
  roles: Record<string, RoleInfo>,
  options: { intervalMs: number; timeoutMs: number },
): ClusterView {
  let view: ClusterView | undefined = undefined;
  const poller = new StatsPoller(
    topology.instances.filter((i) => listens(i, roles)).map((i) => ({
      name: i.name,
      address: () => view?.addressOf(i.name),
      credentials: launcherCredentials(i),
      tls: launcherTls(i),
    })),
    { intervalMs: options.intervalMs, timeoutMs: options.timeoutMs, clientName: `dist-status` },
  );
  view = new ClusterView(
    topology.file,
    topology.instances.map((i: Instance) => ({
      name: i.name,
      role: i.role,
      ...(listens(i, roles) ? { address: addressOf(i) } : {}),
      refs: i.refs,
    })),
    { poller },
  );
  return view;
}

/** One instance of the view as a row of the status table. */
export function rowOf(view: InstanceView, stats?: Record<string, unknown>): StatusRow {
  const listening = view.address !== null;
  const answering = view.polled_ms !== null;
  let state = view.state;
  if (listening && answering) state = "up";
  else if (view.health === "down" && !["backoff", "exited"].includes(view.state)) state = "down";
  const figures: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(answering ? stats ?? {} : {})) {
    if (!["role", "name", "uptime_ms", "rss_bytes"].includes(key)) figures[key] = value;
  }
  return {
    instance: view.name,
    role: view.role,
    address: view.address,
    state,
    pid: view.pid,
    uptime_ms: view.uptime_ms,
    restarts: view.restarts,
    rss_bytes: view.rss_bytes,
    figures,
    ...(view.last_exit ? { last_exit: view.last_exit } : {}),
    ...(view.note ? { note: view.note } : {}),
    rate: view.rate === null ? "-" : `${formatRate(view.rate)} ${view.rate_unit}`,
  };
}

/** Cuts a line to `columns` characters (a wrapped line would break the redraw). */
function fit(line: string, columns: number | undefined): string {
  return columns !== undefined && line.length > columns ? line.slice(0, columns) : line;
}

/**
 * Runs the watch until `options.signal` aborts (or SIGINT/SIGTERM); resolves
 * with exit code 0.
 */
export async function watchStatus(topology: Topology, options: WatchOptions): Promise<number> {
  const terminal = options.terminal ?? Deno.stdout.isTerminal();
  const columns = options.columns ?? (() => {
    try {
      return terminal ? Deno.consoleSize().columns : undefined;
    } catch {
      return undefined;
    }
  });
  const encoder = new TextEncoder();
  const write = options.write ?? ((text: string) => {
    const bytes = encoder.encode(text);
    let off = 0;
    while (off < bytes.length) off += Deno.stdout.writeSync(bytes.subarray(off));
  });
  const stop = new AbortController();
  const signals: Deno.Signal[] = options.signal ? [] : ["SIGINT", "SIGTERM"];
  const onSignal = () => stop.abort();
  for (const s of signals) Deno.addSignalListener(s, onSignal);
  options.signal?.addEventListener("abort", onSignal, { once: true });

  const view = viewOf(topology, options.roles, options);
  /** The launchers' word on each instance (the first launcher's, if two run one file). */
  const refresh = async () => {
    const launchers = await readStates(options.key);
    for (const launcher of [...launchers].reverse()) {
      for (const [name, state] of Object.entries(launcher.instances)) view.setState(name, state);
    }
    return launchers;
  };
  await refresh();
  let rendering = Promise.resolve();
  let first = true;
  const render = async (at: number) => {
    const launchers = await refresh();
    if (stop.signal.aborted) return;
    const views = view.instances();
    const latest = view.poller.latest;
    if (options.json) {
      write(views.map((v) => JSON.stringify({ at, ...v }) + "\n").join(""));
      return;
    }
    const rows = views.map((v) => rowOf(v, latest.get(v.name)?.stats));
    const time = new Date(at).toISOString().slice(11, 19);
    const who = launchers.length === 0
      ? `no dist up of ${topology.file} runs on this machine`
      : `dist up pid ${launchers.map((l) => l.pid).join(", ")}`;
    const lines = [
      `${topology.file} at ${time} (${who}); every ${options.intervalMs} ms, Ctrl-C to stop`,
      "",
      ...formatStatusTable(rows, { rates: true }),
      ...rows.filter((r) => r.note !== undefined).map((r) => `${r.instance}: ${r.note}`),
    ];
    if (!terminal) {
      write((first ? "" : "\n") + lines.join("\n") + "\n");
    } else {
      const width = columns();
      const body = lines.map((l) => fit(l, width) + CLEAR_LINE).join("\n");
      write((first ? CLEAR_SCREEN : "") + HOME + body + "\n" + CLEAR_BELOW);
    }
    first = false;
  };
  const unsubscribe = view.subscribe((event) => {
    if (event.type !== "round") return;
    rendering = rendering.then(() => render(event.at)).catch(() => stop.abort());
  });
  const release = view.watch();
  try {
    await new Promise<void>((resolve) => {
      if (stop.signal.aborted) resolve();
      stop.signal.addEventListener("abort", () => resolve(), { once: true });
    });
  } finally {
    release();
    unsubscribe();
    for (const s of signals) Deno.removeSignalListener(s, onSignal);
    options.signal?.removeEventListener("abort", onSignal);
    await view.poller.close();
    await rendering;
  }
  return 0;
}
