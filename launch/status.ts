/**
 * `dist status [FILE]`: asks every instance of a topology for `sys.stats`
 * (all at once, each bounded by `--timeout`) and prints one table; what only
 * the launcher knows (restarts, the pid of an instance that does not listen,
 * the port an instance configured with port 0 got) comes from the state
 * files of the `dist up` processes running that topology on this machine.
 */
import { type Instance, type RoleInfo, UsageError } from "../config/mod.ts";
import { formatLauncherHelp, parseLauncherArgs, STATUS } from "./args.ts";
import { launcherCredentials } from "./secrets.ts";
import { launcherTls } from "./tls.ts";
import { writeStdoutQuietly } from "./output.ts";
import { addressOf, listens } from "./plan.ts";
import { rssOf } from "./observe/mod.ts";
import { probe } from "./probe.ts";
import { metricsUrl, scrapeFigures } from "./status_metrics.ts";
import { holdsPort } from "./port_owner.ts";
import { type InstanceState, readStates, topologyKey } from "./state.ts";
import { watchStatus } from "./status_watch.ts";
import { readTopology } from "./up.ts";

/** One row of the table. */
export interface StatusRow {
  instance: string;
  role: string;
  address: string | null;
  /**
   * up, down, taken (something else answers on its port), hung (its own process accepts on its
   * port but does not answer), running, exited,
   * backoff, starting, waiting, stopped, unknown.
   */
  state: string;
  /** Its process, when a launcher on this machine started it. */
  pid: number | null;
  uptime_ms: number | null;
  restarts: number | null;
  rss_bytes: number | null;
  /** The role's own figures from sys.stats (requests, backends up, topics …). */
  figures: Record<string, unknown>;
  /** How the last process ended, when the launcher knows. */
  last_exit?: string;
  /** What is wrong, in words: "port 5557 answers, but not as server-1 (…)". */
  note?: string;
  /** Its key rate in words (`12.5 requests/s`), with `--watch`. */
  rate?: string;
}

/** Keys of sys.stats shown in their own columns, not among the figures. */
const OWN_COLUMNS = new Set(["role", "name", "uptime_ms", "rss_bytes"]);

/** The row of one instance, asking it over the wire when it listens. */
export async function statusOf(
  instance: Instance,
  context: { roles: Record<string, RoleInfo>; state?: InstanceState; timeoutMs: number },
): Promise<StatusRow> {
  const { state } = context;
  const address = state?.address ?? (instance.options.port === 0 ? undefined : addressOf(instance));
  const row: StatusRow = {
    instance: instance.name,
    role: instance.role,
    address: address ?? null,
    state: state?.state ?? "unknown",
    pid: state?.pid ?? null,
    uptime_ms: null,
    restarts: state?.restarts ?? null,
    rss_bytes: null,
    figures: {},
    ...(state?.last_exit ? { last_exit: state.last_exit } : {}),
  };
  const running = state?.pid !== undefined;
  if (running && state?.started_ms !== undefined) row.uptime_ms = Date.now() - state.started_ms;
  if (running) row.rss_bytes = rssOf(state!.pid);
  if (!listens(instance, context.roles)) {
    // No dist on its port (a balancer in --mode tcp): its figures are its --metrics'.
    const url = running ? metricsUrl(instance) : undefined;
    const figures = url && await scrapeFigures(url, instance.role, context.timeoutMs);
    if (figures && Object.keys(figures).length > 0) {
      row.state = "up"; // It answered with its figures: as a sys.stats answer says.
      row.figures = figures;
    }
    return row;
  }
  if (address === undefined) {
    if (state === undefined) row.state = "down";
    return row;
  }
  const answer = await probe(address, "sys.stats", {
    timeoutMs: context.timeoutMs,
    name: instance.name,
    credentials: launcherCredentials(instance),
    tls: launcherTls(instance),
  });
  if (!answer.ok) {
    if (answer.refused) {
      // A dist listener that checks credentials answered, refusing ours: it is up.
      row.state = "up";
      row.note = `refused dist status: ${cellText(answer.reason, 120)} (set DIST_TOKEN, ` +
        `or DIST_USER and DIST_PASSWORD of a user allowed sys.stats)`;
      return row;
    }
    const port = address.slice(address.lastIndexOf(":") + 1);
    const pid = state?.pid;
    const settled = state !== undefined && ["ready", "running"].includes(state.state);
    if (answer.name === undefined && pid !== undefined && (answer.answered || settled)) {
      const ours = holdsPort(pid, +port);
      if (ours && answer.answered && !answer.timedOut) {
        // Its own process closes at once: at its connection limits (r47 R14), not someone else.
        row.state = "up";
        row.note = `${instance.name} (pid ${pid}) closed dist status's connection before its ` +
          `hello (${cellText(answer.reason, 80)}): at its connection limits?`;
        return row;
      }
      if (ours) {
        // Its own process holds the port and says nothing, the kernel accepting for it or its
        // backlog full: stopped or its loop blocked (hostile47 Q2, r47 R3).
        row.state = "hung";
        row.note = `${instance.name} (pid ${pid}) holds port ${port} but does not answer ` +
          `(${cellText(answer.reason, 80)}): stopped, or its event loop blocked`;
        return row;
      }
    }
    if (answer.answered) {
      // Another process holds the port: "down" would send the user looking in the wrong place.
      row.state = "taken";
      row.note = answer.name !== undefined
        ? `port ${port} answers as ${cellText(answer.name)}, not as ${instance.name}`
        : `port ${port} answers, but not as ${instance.name} (${cellText(answer.reason, 120)})`;
      return row;
    }
    // The launcher's word (backoff, starting …) says more than "down".
    if (!state || ["ready", "running"].includes(state.state)) row.state = "down";
    return row;
  }
  row.state = "up";
  const stats = (answer.result ?? {}) as Record<string, unknown>;
  // An instance's answer is its own word: only a sane number is taken.
  if (isCount(stats.uptime_ms)) row.uptime_ms = stats.uptime_ms;
  if (isCount(stats.rss_bytes)) row.rss_bytes = stats.rss_bytes;
  for (const [key, value] of Object.entries(stats)) {
    if (!OWN_COLUMNS.has(key)) row.figures[key] = value;
  }
  return row;
}

/** Text another process chose, made fit for one line: control characters out, cut. */
function cellText(text: string, max = 40): string {
  // Control and format characters (bidi overrides) and line separators could forge lines.
  const clean = text.replace(/[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/gu, "?");
  return clean.length > max ? `${clean.slice(0, max - 1)}…` : clean;
}

/** A finite, non-negative number. */
function isCount(value: unknown): value is number {
  return typeof value === "number" && Number.isFinite(value) && value >= 0;
}

/**
 * Text an instance chose, fit for one table cell: letters, digits,
 * punctuation and symbols only — no spaces, newlines, control or format
 * characters (an answer must not forge rows or move the terminal's cursor).
 */
const CELL_TEXT = /^[\p{L}\p{N}\p{P}\p{S}]{1,40}$/u;
const FIGURE_KEY = /^[A-Za-z0-9_.-]{1,40}$/;

/** 61_000 -> "1m01s", 3_723_000 -> "1h02m", 4_200 -> "4s". */
export function formatUptime(ms: number): string {
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
  const h = Math.floor(s / 3600);
  if (h < 48) return `${h}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
  return `${Math.floor(h / 24)}d${String(h % 24).padStart(2, "0")}h`;
}

/**
 * The figures the table shows, when a role reports them (`--json` has them
 * all): requests served, backends up, topics, subscriptions, registered
 * instances and the like.
 */
export const KEY_FIGURES: readonly string[] = [
  "requests",
  "errors",
  "healthy",
  "backends",
  "workers",
  "queued",
  "topics",
  "subscriptions",
  "messages_in",
  "messages_out",
  "services",
  "instances",
  "tasks",
];

/**
 * A role's figures in one cell, `requests=20 errors=0`: the {@link KEY_FIGURES}
 * it has (all of its figures when it has none of them); lists by their
 * length, tables left out, and anything not fit for a cell (non-finite
 * numbers, text with spaces or control characters, odd keys) left to `--json`.
 */
export function formatFigures(figures: Record<string, unknown>): string {
  const keys = KEY_FIGURES.filter((k) => Object.hasOwn(figures, k));
  const shown = keys.length > 0 ? keys.map((k) => [k, figures[k]]) : Object.entries(figures);
  const parts: string[] = [];
  for (const [key, value] of shown) {
    if (!FIGURE_KEY.test(key as string)) continue;
    if (typeof value === "number" && Number.isFinite(value)) parts.push(`${key}=${value}`);
    else if (typeof value === "boolean") parts.push(`${key}=${value}`);
    else if (typeof value === "string" && CELL_TEXT.test(value)) parts.push(`${key}=${value}`);
    else if (Array.isArray(value)) parts.push(`${key}=${value.length}`);
  }
  return parts.join(" ");
}

/**
 * The table of `dist status`, a header line and one line per instance; a
 * RATE column when `options.rates` (`dist status --watch`).
 */
export function formatStatusTable(rows: StatusRow[], options: { rates?: boolean } = {}): string[] {
  const rate = options.rates ? ["RATE"] : [];
  const table = [
    [
      "INSTANCE",
      "ROLE",
      "ADDRESS",
      "STATE",
      ...rate,
      "PID",
      "UPTIME",
      "RESTARTS",
      "RSS",
      "FIGURES",
    ],
    ...rows.map((r) => [
      r.instance,
      r.role,
      r.address ?? "-",
      r.state === "exited" && r.last_exit ? `exited (${r.last_exit})` : r.state,
      ...(options.rates ? [r.rate ?? "-"] : []),
      r.pid === null ? "-" : String(r.pid),
      r.uptime_ms === null ? "-" : formatUptime(r.uptime_ms),
      r.restarts === null ? "-" : String(r.restarts),
      r.rss_bytes === null ? "-" : `${(r.rss_bytes / 1024 / 1024).toFixed(1)} MiB`,
      formatFigures(r.figures),
    ]),
  ];
  const widths = table[0].map((_, c) => table.reduce((w, row) => Math.max(w, row[c].length), 0));
  return table.map((row) => row.map((cell, c) => cell.padEnd(widths[c])).join("  ").trimEnd());
}

/**
 * Runs `dist status` with the arguments after `status`. Exit code 0 when
 * every listening instance answers, 1 otherwise.
 *
 * @throws {UsageError} for bad flags or a bad topology (exit 2)
 */
export async function status(argv: string[], roles: Record<string, RoleInfo>): Promise<number> {
  const args = parseLauncherArgs(argv, STATUS);
  if (args.help) {
    writeStdoutQuietly(formatLauncherHelp(STATUS));
    return 0;
  }
  const { topology } = await readTopology(args.file, roles, {
    maxInstances: args.options.maxInstances as number,
  });
  if ((args.options.interval as number) < 100) {
    throw new UsageError("--interval must be at least 100ms");
  }
  if (args.options.watch) {
    return await watchStatus(topology, {
      roles,
      key: topologyKey(args.file),
      intervalMs: args.options.interval as number,
      timeoutMs: args.options.timeout as number,
      json: args.options.json as boolean,
    });
  }
  const states = new Map<string, InstanceState>();
  const launchers = await readStates(topologyKey(args.file));
  for (const launcher of launchers) {
    for (const [name, state] of Object.entries(launcher.instances)) {
      if (!states.has(name)) states.set(name, state);
    }
  }
  const timeoutMs = args.options.timeout as number;
  const rows = await Promise.all(
    topology.instances.map((i) => statusOf(i, { roles, state: states.get(i.name), timeoutMs })),
  );
  const pids = launchers.map((l) => l.pid).join(", ");
  const footer = launchers.length === 0
    ? `No dist up of ${topology.file} runs on this machine: restarts not known`
    : `Restarts from dist up (pid ${pids}) on this machine` +
      launchers.filter((l) => l.dashboard).map((l) => `; dashboard at ${l.dashboard}`).join("");
  const notes = rows.filter((r) => r.note !== undefined).map((r) => `${r.instance}: ${r.note}`);
  const lines = args.options.json
    ? rows.map((r) => JSON.stringify(r))
    : [...formatStatusTable(rows), "", ...notes, footer];
  for (const line of lines) writeStdoutQuietly(line + "\n");
  const down = rows.some((r) =>
    listens(findInstance(topology.instances, r.instance), roles) &&
    r.state !== "up"
  );
  return down ? 1 : 0;
}

function findInstance(instances: Instance[], name: string): Instance {
  return instances.find((i) => i.name === name)!;
}
