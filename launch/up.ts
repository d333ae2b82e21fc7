/**
 * `dist up [FILE]`: load the topology (or the embedded default), plan it,
 * then print the plan (`--dry-run`) or run it under a {@link Supervisor}
 * until SIGINT/SIGTERM, `--duration`, or every instance has ended.
 */
import { loadCpuUsage, MetricsBindError } from "../obs/mod.ts";
import { launcherMetrics } from "./metrics.ts";
import {
  DEFAULT_TOPOLOGY,
  DEFAULT_TOPOLOGY_FILE,
  hostsClash,
  type Instance,
  listenHost,
  parseAddress,
  parseTopology,
  readUserFile,
  type RoleInfo,
  type Topology,
  TOPOLOGY_RULE,
  toSnake,
  UsageError,
} from "../config/mod.ts";
import { formatLauncherHelp, parseLauncherArgs, UP } from "./args.ts";
import { DEFAULT_DASHBOARD, type OpenDashboard, openDashboard } from "./dashboard/mod.ts";
import { Output, wantsColour, writeStdoutQuietly } from "./output.ts";
import { addressOf, childArgs, makePlan, type Plan, planProblems, shellWords } from "./plan.ts";
import {
  checkDataDirs,
  placeDataDirs,
  readStates,
  realTopologyKey,
  stateDirProblem,
  StateWriter,
  topologyKey,
} from "./state.ts";
import { applyTls, ensureTlsFiles } from "./tls.ts";
import { checkSecretFiles } from "./secrets.ts";
import { lockLauncher } from "./launcher_lock.ts";
import { DistError } from "../wire/mod.ts";
import { dirname, resolve } from "node:path";
import { Supervisor } from "./supervisor.ts";
import { listenerAt } from "./ports.ts";

/** A topology and its text (for line numbers in plan errors). */
export interface LoadedTopology {
  topology: Topology;
  text: string;
}

/**
 * Reads and validates `file`, or the embedded default topology when it is
 * undefined: every problem of the file, the launcher's own (reference
 * cycles) included, in one error.
 *
 * @throws {UsageError} when the file cannot be read or is not a valid topology
 */
export async function readTopology(
  file: string | undefined,
  roles: Record<string, RoleInfo>,
  options: {
    maxInstances?: number;
    applyTls?: boolean;
    writtenPaths?: boolean;
    /** Read to export it (its secrets go elsewhere): an inline secret others may read is no refusal. */
    exported?: boolean;
  } = {},
): Promise<LoadedTopology> {
  let text = DEFAULT_TOPOLOGY;
  if (file !== undefined) {
    try {
      const rule = options.exported ? { ...TOPOLOGY_RULE, inline: undefined } : TOPOLOGY_RULE;
      text = await readUserFile("topology file", file, rule); // Bounded (h48 P1).
    } catch (error) {
      if (error instanceof UsageError) throw error;
      const reason = error instanceof Error ? error.message : String(error);
      throw new UsageError(`Cannot read topology file ${file}: ${reason}`, { cause: error });
    }
  }
  const topology = parseTopology(text, {
    file: file ?? DEFAULT_TOPOLOGY_FILE,
    roles,
    maxInstances: options.maxInstances,
    check: (t) => planProblems(t, { roles, text }),
    // Relative paths from the file's folder (the built-in topology has none).
    paths: file === undefined
      ? undefined
      : { folder: dirname(resolve(file)), written: options.writtenPaths !== false },
  });
  // [security] tls: every instance's --tls-* options (the files are made by up);
  // dist export carries them its own way (export/secrets.ts).
  if (options.applyTls !== false) applyTls(topology, roles, topologyKey(file));
  return { topology, text };
}

/**
 * Checks `--dashboard` and `--metrics` against the listeners of the plan's
 * instances (the launcher binds first, so the instance would fail on its own
 * port: hostile h48 P8), and against each other; the default dashboard moves
 * to a free port instead.
 *
 * @throws {UsageError} naming the flag and the instance
 */
function launcherAddresses(
  o: Record<string, unknown>,
  plan: Plan,
  roles: Record<string, RoleInfo>,
): { address: string; note?: string } {
  const instances = plan.instances.map((p) => p.instance);
  const at = (text: string) => {
    try {
      return parseAddress(text);
    } catch {
      return undefined; // Said when it is bound.
    }
  };
  const flags = (["dashboard", "metrics"] as const).filter((flag) => o[flag] !== undefined);
  for (const flag of flags) {
    const address = at(o[flag] as string);
    const clash = address && listenerAt(address, instances, roles);
    if (clash) {
      const what = clash.key === "port" ? "port" : `${toSnake(clash.key)} address`;
      throw new UsageError(
        `--${flag} ${o[flag]} is ${clash.instance.name}'s ${what} in ${plan.file}: ` +
          `give another, or port 0 (a free one)`,
      );
    }
  }
  const [d, m] = [at(o.dashboard as string ?? ""), at(o.metrics as string ?? "")];
  if (
    d && m && d.port !== 0 && d.port === m.port &&
    hostsClash(listenHost(d.host), listenHost(m.host))
  ) {
    throw new UsageError(`--dashboard ${o.dashboard} and --metrics ${o.metrics} are one address`);
  }
  if (o.dashboard !== undefined) return { address: o.dashboard as string };
  const clash = listenerAt(parseAddress(DEFAULT_DASHBOARD), instances, roles);
  if (clash === undefined) return { address: DEFAULT_DASHBOARD };
  return {
    address: "127.0.0.1:0",
    note: `${DEFAULT_DASHBOARD} is ${clash.instance.name}'s ${
      clash.key === "port" ? "port" : `${toSnake(clash.key)} address`
    }: the dashboard takes a free port`,
  };
}

/**
 * Runs `dist up` with the arguments after `up`; resolves with the exit code.
 *
 * @throws {UsageError} for bad flags or a bad topology (exit 2)
 */
export async function up(argv: string[], roles: Record<string, RoleInfo>): Promise<number> {
  const args = parseLauncherArgs(argv, UP);
  if (args.help) {
    writeStdoutQuietly(formatLauncherHelp(UP));
    return 0;
  }
  const o = args.options;
  const { topology, text } = await readTopology(args.file, roles, {
    maxInstances: o.maxInstances as number,
  });
  const plan = makePlan(topology, {
    roles,
    text,
    only: o.only as string[] | undefined,
    on: o.on as string | undefined,
  });
  await placeDataDirs(topology.instances, topologyKey(args.file));
  const byName = new Map(topology.instances.map((i) => [i.name, i]));
  if (o.dryRun) {
    for (const line of formatPlan(plan, { roles, byName, json: o.json as boolean })) {
      writeStdoutQuietly(line + "\n");
    }
    return 0;
  }
  checkDataDirs(plan.instances.map((p) => p.instance));
  checkSecretFiles(plan.instances.map((p) => p.instance));
  const dashboardAt = launcherAddresses(o, plan, roles);
  // Two launchers of one topology on one machine would fight over its ports.
  const key = topologyKey(args.file);
  const twin = (await readStates(key)).find((s) => s.on === plan.on);
  if (twin !== undefined || !await lockLauncher([key, realTopologyKey(args.file)], plan.on)) {
    throw new UsageError(
      `dist up of ${topology.file}${plan.on ? ` --on ${plan.on}` : ""} already runs here ` +
        `(${
          twin ? `pid ${twin.pid}` : "its state not written"
        }): stop it first, or see it with dist status`,
    );
  }
  const stop = new AbortController();
  const kill = new AbortController();
  const signals: Deno.Signal[] = ["SIGINT", "SIGTERM", "SIGHUP"];
  const interrupts = new Interrupts();
  const handlers = signals.map((name) => {
    // The first signal stops everything in order; a second kills at once.
    const handler = () => {
      const what = interrupts.take();
      if (what === "stop") stop.abort(name);
      else if (what === "kill") kill.abort();
    };
    Deno.addSignalListener(name, handler);
    return [name, handler] as const;
  });
  const state = new StateWriter({
    file: key,
    ...(plan.on === undefined ? {} : { on: plan.on }),
    instances: Object.fromEntries(plan.instances.map((p) => [
      p.instance.name,
      { role: p.instance.role, state: "waiting", restarts: 0, address: addressOf(p.instance) },
    ])),
  }, (text) => say(text));
  let dashboard: OpenDashboard | undefined;
  await loadCpuUsage();
  const metrics = launcherMetrics(state);
  // The dashboard may have to say something before the launcher's output exists.
  let say = (text: string) => console.error(`dist up: ${text}`);
  try {
    if (o.metrics !== undefined) {
      try {
        metrics.serve(parseAddress(o.metrics as string));
      } catch (err) {
        throw err instanceof MetricsBindError ? new UsageError(err.message) : err;
      }
    }
    if (!o.noDashboard) {
      dashboard = openDashboard(plan, {
        address: dashboardAt.address,
        fallback: o.dashboard === undefined,
        byName,
        state,
        metrics: metrics.registry,
        warn: (text) => say(text),
      });
    }
  } catch (err) {
    await metrics.close();
    for (const [name, handler] of handlers) Deno.removeSignalListener(name, handler);
    throw err;
  }
  const output = new Output(plan.instances.map((p) => p.instance.name), { colour: wantsColour() });
  say = (text) => output.say(text);
  const unsafe = stateDirProblem();
  if (unsafe !== undefined) {
    output.say(`Not keeping state: ${unsafe} (dist status will not see this launcher)`);
  }
  if (dashboardAt.note !== undefined && dashboard !== undefined) output.say(dashboardAt.note);
  if (dashboard?.note) output.say(dashboard.note);
  let made: string[];
  try {
    made = await ensureTlsFiles(topology, roles, key);
  } catch (err) {
    await output.flush(FLUSH_MS);
    await dashboard?.close();
    await metrics.close();
    for (const [name, handler] of handlers) Deno.removeSignalListener(name, handler);
    if (err instanceof UsageError) throw err; // A file of the user's to fix (a ca.crt that is no CA).
    throw new DistError("UNAVAILABLE", `Cannot make the TLS files: ${(err as Error).message}`);
  }
  if (metrics.addr !== undefined) {
    const { hostname, port } = metrics.addr;
    output.say(
      `Launcher metrics at http://${
        hostname.includes(":") ? `[${hostname}]` : hostname
      }:${port}/metrics`,
    );
  }
  for (const line of made) output.say(line);
  try {
    return await new Supervisor(plan, {
      roles,
      byName,
      output,
      ...(dashboard === undefined ? {} : { dashboard: dashboard.url }),
      graceMs: o.grace as number,
      readyTimeoutMs: o.readyTimeout as number,
      durationMs: o.duration as number | undefined,
      signal: stop.signal,
      kill: kill.signal,
      state,
    }).run();
  } finally {
    await dashboard?.close();
    // Its last lines ("Stopped …"), unless nobody reads them any more.
    await output.flush(FLUSH_MS);
    await metrics.close();
    for (const [name, handler] of handlers) Deno.removeSignalListener(name, handler);
  }
}

/**
 * Signals closer together than this are one request to stop (ms): one
 * Ctrl-C under `deno task up` reaches the launcher twice, from the terminal
 * (the launcher is in the task runner's process group) and forwarded by
 * `deno task` a moment later (under npx, npm may forward a third). A person
 * pressing Ctrl-C again to kill at once does so well after half a second.
 */
export const REPEAT_MS = 400;

/** Tells a stop signal from a second one that kills, and from an echo of the first. */
export class Interrupts {
  #first?: number;
  #now: () => number;

  constructor(now: () => number = () => performance.now()) {
    this.#now = now;
  }

  /** What a signal arriving now asks for: stop (the first), kill (a later one), or nothing (an echo). */
  take(): "stop" | "kill" | "echo" {
    const now = this.#now();
    if (this.#first === undefined) {
      this.#first = now;
      return "stop";
    }
    return now - this.#first < REPEAT_MS ? "echo" : "kill";
  }
}

/** How long the launcher waits at its end for its output to be read (ms). */
const FLUSH_MS = 5000;

/** Most names a cell of the plan lists; the rest are counted. */
const CELL_NAMES = 6;

/** `a, b, c`, or `a, b, … (100 in all)` for a long list; `-` for none. */
function abridge(names: string[]): string {
  if (names.length === 0) return "-";
  if (names.length <= CELL_NAMES) return names.join(", ");
  return `${names.slice(0, CELL_NAMES - 1).join(", ")}, … (${names.length} in all)`;
}

/** How {@link formatPlan} writes. */
export interface FormatPlanOptions {
  roles: Record<string, RoleInfo>;
  byName: Map<string, Instance>;
  json?: boolean;
}

/**
 * The `--dry-run` output: a table (step, instance, role, address, restart,
 * what it waits for), then each command line; or one JSON object per
 * instance, in start order.
 */
export function formatPlan(plan: Plan, options: FormatPlanOptions): string[] {
  const remote = new Map(plan.remote.map((r) => [r.name, r]));
  const rows = plan.instances.map((p) => ({
    step: p.step,
    name: p.instance.name,
    role: p.instance.role,
    host: p.instance.host,
    address: addressOf(p.instance) ?? null,
    restart: p.instance.restart,
    after: p.after,
    remote: p.remote.map((name) => ({ name, address: remote.get(name)!.address })),
    argv: childArgs(p.instance, { roles: options.roles, byName: options.byName }),
  }));
  if (options.json) return rows.map((row) => JSON.stringify(row));
  const steps = rows.reduce((most, r) => Math.max(most, r.step), 0);
  const on = plan.on === undefined ? "" : ` on ${plan.on}`;
  const table = [
    ["step", "instance", "role", "address", "restart", "waits for"],
    ...rows.map((r) => [
      String(r.step),
      r.name,
      r.role,
      r.address ?? "-",
      r.restart,
      abridge([...r.after, ...r.remote.map((d) => `${d.name} at ${d.address} (another host)`)]),
    ]),
  ];
  const widths = table[0].map((_, c) => table.reduce((w, row) => Math.max(w, row[c].length), 0));
  widths[widths.length - 1] = 0; // The last column is not padded.
  const width = rows.reduce((w, r) => Math.max(w, r.name.length), 0);
  return [
    `Plan for ${plan.file}${on}: ${rows.length} instance${rows.length === 1 ? "" : "s"} in ` +
    `${steps} start step${steps === 1 ? "" : "s"}; each starts once what it waits for is ready`,
    "",
    ...table.map((row) => row.map((cell, c) => cell.padEnd(widths[c])).join("  ").trimEnd()),
    "",
    "Command lines:",
    ...rows.map((r) => `  ${r.name.padEnd(width)}  dist ${shellWords(r.argv)}`),
  ];
}
