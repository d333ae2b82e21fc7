/**
 * The plan of `dist up`: which instances of a topology run on this machine,
 * what each waits for, in what order they start, and the command line of
 * each. Pure functions over a loaded {@link Topology}: no processes, no
 * sockets.
 *
 * Dependencies come from references (`instance.refs`): an instance that
 * names another starts once the other is ready. References between
 * instances of one role (binders naming each other as `peers`) are peer
 * links, not dependencies: such instances start together and find each
 * other as they come up. Any other reference cycle is a configuration error.
 * Some dependencies a topology implies without naming them (waits.ts).
 */
import {
  defaultsOf,
  dialHost,
  didYouMean,
  formatAddress,
  type Instance,
  LineLocator,
  type Options,
  optionsToArgv,
  type RoleInfo,
  roleSpec,
  speaksDist,
  throwProblems,
  type Topology,
  type TopologyProblem,
  toSnake,
  UsageError,
} from "../config/mod.ts";
import { dependenciesOf, dependencyMap, readyLineOf, sameHost } from "./waits.ts";
import { isSecret } from "./secrets.ts";

export { sameHost } from "./waits.ts";

/** One instance as `dist up` runs it. */
export interface PlannedInstance {
  instance: Instance;
  /** Local instances it waits for (each ready before it starts). */
  after: string[];
  /** Instances on other machines it waits for (each answering before it starts). */
  remote: string[];
  /** 1 for instances that wait for nothing, else 1 + the largest step of what they wait for. */
  step: number;
  /**
   * Whether it listens (has a `port`) and speaks dist there, so answers
   * `sys.ping` when ready (a balancer in `--mode tcp` listens but passes
   * every byte on: its ready line says it is ready).
   */
  listens: boolean;
  /**
   * The log line that says it is ready (see waits.ts): for an instance that
   * does not listen, instead of answering `sys.ping`, else besides; an
   * instance with neither counts as ready once started.
   */
  readyLine?: RegExp;
}

/** An instance on another machine that a local instance waits for. */
export interface RemoteDependency {
  name: string;
  role: string;
  /** Where it answers `sys.ping`. */
  address: string;
}

/** What `dist up` will run. */
export interface Plan {
  file: string;
  /** `--on HOST`, when given. */
  on?: string;
  /** The local instances, in start order. */
  instances: PlannedInstance[];
  remote: RemoteDependency[];
}

/** How {@link makePlan} picks instances. */
export interface PlanOptions {
  /** The role table (for option specs). */
  roles: Record<string, RoleInfo>;
  /** `--only`: these instances or entries, and what they depend on. */
  only?: string[];
  /** `--on`: only instances placed on this host. */
  on?: string;
  /** The topology's text, so that a cycle can be reported with its line. */
  text?: string;
}

/** The key of a reference, for messages: which option of `from` names `to`. */
function refKey(from: Instance, to: string): string {
  const key = Object.keys(from.refs).find((k) => from.refs[k].includes(to)) ?? "?";
  return toSnake(key);
}

/**
 * Orders a topology for `dist up`.
 *
 * @throws {UsageError} for a reference cycle (naming the file, the line and
 *   the keys), an unknown `--only` name, no instance on the `--on` host, or
 *   an address that cannot be known before start (port 0 on another host)
 */
export function makePlan(topology: Topology, options: PlanOptions): Plan {
  throwProblems(topology.file, planProblems(topology, options));
  const byName = new Map(topology.instances.map((i) => [i.name, i]));
  const deps = dependencyMap(topology.instances, options.roles);

  const selected = selectOnly(topology, deps, options.only);
  const isLocal = (i: Instance) => options.on === undefined || sameHost(i.host, options.on);
  const local = topology.instances.filter((i) => selected.has(i.name) && isLocal(i));
  if (local.length === 0) {
    const hosts = [...new Set(topology.instances.map((i) => i.host))];
    const which = options.only ? "No selected instance" : "No instance";
    throw new UsageError(
      `${which} of ${topology.file} is placed on ${options.on} (hosts: ${hosts.join(", ")})`,
    );
  }
  const localNames = new Set(local.map((i) => i.name));
  const remote = new Map<string, RemoteDependency>();
  const steps = new Map<string, number>();
  const stepOf = (name: string): number => {
    let step = steps.get(name);
    if (step === undefined) {
      const before = deps.get(name)!.filter((d) => localNames.has(d));
      step = 1 + before.reduce((most, dep) => Math.max(most, stepOf(dep)), 0);
      steps.set(name, step);
    }
    return step;
  };
  const planned = local.map((instance, index) => {
    const mine = deps.get(instance.name)!;
    const elsewhere = mine.filter((d) => !localNames.has(d));
    for (const name of elsewhere) remote.set(name, remoteDependency(byName.get(name)!, instance));
    const listening = listens(instance, options.roles);
    const readyLine = readyLineOf(instance, listening);
    return {
      index,
      planned: {
        instance,
        after: mine.filter((d) => localNames.has(d)),
        remote: elsewhere,
        step: stepOf(instance.name),
        listens: listening,
        ...(readyLine === undefined ? {} : { readyLine }),
      },
    };
  });
  planned.sort((a, b) => a.planned.step - b.planned.step || a.index - b.index);
  return {
    file: topology.file,
    ...(options.on === undefined ? {} : { on: options.on }),
    instances: planned.map((p) => p.planned),
    remote: [...remote.values()],
  };
}

/**
 * Whether the instance listens on a `port` and speaks dist there (answers
 * `sys.ping` and `sys.stats`, takes TLS files and credentials).
 */
export function listens(instance: Instance, roles: Record<string, RoleInfo>): boolean {
  const role = roles[instance.role];
  const def = roleSpec(role).port;
  return def?.type === "port" && typeof instance.options.port === "number" &&
    speaksDist(role, instance.options);
}

/** Where an instance answers `sys.ping`, as configured (port may be 0). */
export function addressOf(instance: Instance): string | undefined {
  const port = instance.options.port;
  if (typeof port !== "number") return undefined;
  return formatAddress({ host: dialHost(instance.host), port });
}

/** The names given to `--only`, with everything they depend on; all instances without it. */
function selectOnly(
  topology: Topology,
  deps: Map<string, string[]>,
  only: string[] | undefined,
): Set<string> {
  if (only === undefined) return new Set(topology.instances.map((i) => i.name));
  if (only.length === 0) {
    // `--only ""` or `--only ,` (hostile47 Q11: it said "placed on undefined").
    throw new UsageError(
      `--only: no instance named: give names or entries of ${topology.file}, comma-separated`,
    );
  }
  const selected = new Set<string>();
  const add = (name: string) => {
    if (selected.has(name)) return;
    selected.add(name);
    for (const dep of deps.get(name)!) add(dep);
  };
  const known = [...new Set(topology.instances.flatMap((i) => [i.group, i.name]))];
  for (const name of only) {
    const matching = topology.instances.filter((i) => i.name === name || i.group === name);
    if (matching.length === 0) {
      const hint = didYouMean(name, known);
      throw new UsageError(
        `--only: unknown instance ${JSON.stringify(name)} in ${topology.file}${hint}`,
      );
    }
    for (const instance of matching) add(instance.name);
  }
  return selected;
}

function remoteDependency(target: Instance, from: Instance): RemoteDependency {
  const address = addressOf(target);
  if (address === undefined || target.options.port === 0) {
    throw new UsageError(
      `${from.name} waits for ${target.name} on ${target.host}, whose port is not fixed: ` +
        `give ${target.role}.port a number other than 0`,
    );
  }
  return { name: target.name, role: target.role, address };
}

/**
 * What `dist up` cannot run in a topology, whatever `--only` and `--on`
 * say: reference cycles (other than peers of one role), and references to
 * port 0 the launcher cannot learn. Each with its line when `text` is given.
 * `parseTopology` takes this as its `check`, so that these problems are
 * listed with the file's others in one run.
 */
export function planProblems(
  topology: Topology,
  options: { roles: Record<string, RoleInfo>; text?: string },
): TopologyProblem[] {
  const byName = new Map(topology.instances.map((i) => [i.name, i]));
  const deps = new Map(topology.instances.map((i) => [i.name, dependenciesOf(i, byName)]));
  const line = (instance: Instance, key: string) =>
    options.text === undefined ? undefined : lineOf(options.text, topology, instance, key);
  const problems = cycleProblems(topology, deps, line);
  for (const instance of topology.instances) {
    problems.push(...portProblems(instance, { byName, roles: options.roles, line }));
  }
  return problems;
}

/**
 * A reference to port 0 works only for the main `port`, which the launcher
 * learns from the `Listening on` line; and only when that line is logged.
 */
function portProblems(
  instance: Instance,
  context: {
    byName: Map<string, Instance>;
    roles: Record<string, RoleInfo>;
    line: (instance: Instance, key: string) => number | undefined;
  },
): TopologyProblem[] {
  const problems: TopologyProblem[] = [];
  const spec = roleSpec(context.roles[instance.role]);
  if (listens(instance, context.roles) && instance.options.port === 0) {
    const level = String(instance.options.logLevel ?? "info");
    if (!["trace", "debug", "info"].includes(level)) {
      problems.push({
        line: context.line(instance, "port"),
        text:
          `${instance.role}.port: ${instance.name} listens on port 0 with log_level ${level}: ` +
          `dist up learns the port from its "Listening on" line, logged at info`,
      });
    }
  }
  for (const [key, targets] of Object.entries(instance.refs)) {
    const portKey = spec[key]?.refPort ?? "port";
    for (const target of targets) {
      const other = context.byName.get(target);
      if (other?.options[portKey] !== 0) continue;
      // Peers start together, so none can learn another's port first.
      const why = portKey !== "port"
        ? `${instance.name} cannot find it (only "port" 0 is learned from the Listening line)`
        : other.role === instance.role
        ? `instances of one role that name each other start together, so none learns it in time`
        : undefined;
      if (why === undefined) continue;
      problems.push({
        line: context.line(instance, toSnake(key)),
        text:
          `${instance.role}.${toSnake(key)}: ${target} has ${toSnake(portKey)} 0, and ${why}: ` +
          `give ${target} a port`,
      });
    }
  }
  return problems;
}

/** Every reference cycle between entries (each once), naming its keys. */
function cycleProblems(
  topology: Topology,
  deps: Map<string, string[]>,
  line: (instance: Instance, key: string) => number | undefined,
): TopologyProblem[] {
  const byName = new Map(topology.instances.map((i) => [i.name, i]));
  const problems: TopologyProblem[] = [];
  const state = new Map<string, "open" | "done">();
  const path: string[] = [];
  const visit = (name: string): void => {
    state.set(name, "open");
    path.push(name);
    for (const dep of deps.get(name) ?? []) {
      if (state.get(dep) === "open") {
        const cycle = [...path.slice(path.indexOf(dep)), dep];
        const first = byName.get(cycle[0])!;
        const key = refKey(first, cycle[1]);
        const edges = cycle.slice(0, -1).map((n, i) =>
          `${n} (${refKey(byName.get(n)!, cycle[i + 1])})`
        );
        problems.push({
          line: line(first, key),
          text: `${first.role}.${key}: reference cycle: ${edges.join(" -> ")} -> ${cycle.at(-1)}`,
        });
      } else if (state.get(dep) === undefined && deps.has(dep)) visit(dep);
    }
    path.pop();
    state.set(name, "done");
  };
  for (const instance of topology.instances) {
    if (state.get(instance.name) === undefined) visit(instance.name);
  }
  return problems;
}

/**
 * The line of `key` for `instance` in the topology's text: in its entry,
 * else in `[defaults]`, else the entry's header. An entry's section is
 * "role#N", N counting that role's entries from 0 (see config's LineLocator).
 */
function lineOf(
  text: string,
  topology: Topology,
  instance: Instance,
  key: string,
): number | undefined {
  const groups = [
    ...new Set(topology.instances.filter((i) => i.role === instance.role).map((i) => i.group)),
  ];
  const section = `${instance.role}#${groups.indexOf(instance.group)}`;
  const where = new LineLocator(text);
  return where.key(section, key) ?? where.key("defaults", key) ?? where.header(section);
}

/** Values equal as options: arrays item by item. */
function sameValue(a: unknown, b: unknown): boolean {
  if (Array.isArray(a) && Array.isArray(b)) {
    return a.length === b.length && a.every((x, i) => x === b[i]);
  }
  return a === b;
}

/**
 * The arguments after `dist` that run `instance`: its role, then the flags
 * whose values differ from the built-in defaults.
 *
 * @param ports the port each running instance actually listens on; a
 *   reference to an instance configured with port 0 is rewritten to the
 *   port it got, and an instance in `ports` keeps its port across restarts
 */
export function childArgs(
  instance: Instance,
  context: {
    roles: Record<string, RoleInfo>;
    byName: Map<string, Instance>;
    ports?: ReadonlyMap<string, number>;
  },
): string[] {
  const spec = roleSpec(context.roles[instance.role]);
  const ports = context.ports ?? new Map<string, number>();
  const options: Options = { ...instance.options };
  const own = ports.get(instance.name);
  if (own !== undefined && options.port === 0) options.port = own;
  // The loader resolved each name to "host:port" in order, so the k-th item
  // equal to a target's configured address is the k-th target.
  for (const [key, targets] of Object.entries(instance.refs)) {
    const portKey = spec[key]?.refPort ?? "port";
    const value = options[key];
    const items = Array.isArray(value) ? [...value] : [value];
    let next = 0;
    for (let i = 0; i < items.length && next < targets.length; i++) {
      const target = context.byName.get(targets[next]);
      if (target === undefined) break;
      const host = dialHost(target.host);
      const configured = target.options[portKey];
      if (items[i] !== formatAddress({ host, port: configured as number })) continue;
      const actual = ports.get(target.name);
      if (portKey === "port" && configured === 0 && actual !== undefined) {
        items[i] = formatAddress({ host, port: actual });
      }
      next++;
    }
    options[key] = Array.isArray(value) ? items : items[0];
  }
  const defaults = defaultsOf(spec);
  // The name first: command lines are read by people (--dry-run, ps).
  const changed: Options = { name: options.name };
  for (const [key, value] of Object.entries(options)) {
    // Secrets go in the child's environment (childEnv), never where ps shows them.
    if (!sameValue(value, defaults[key]) && !isSecret(spec, key)) changed[key] = value;
  }
  return [instance.role, ...optionsToArgv(changed, spec)];
}

/** A command line as a shell would take it: words with spaces or quotes quoted. */
export function shellWords(words: string[]): string {
  return words.map((w) => /^[\w@%+=:,./-]+$/.test(w) ? w : `'${w.replaceAll("'", `'\\''`)}'`)
    .join(" ");
}
