/**
 * What an instance waits for before `dist up` starts it, beyond what the
 * option specs say: its references (peers of one role apart), the
 * dependencies a topology implies without naming them, and the log line
 * that says an instance is ready when `sys.ping` cannot (or not alone).
 * This is the launcher's knowledge of roles, kept in one place.
 *
 * Implied dependencies make what a client of the cluster sees independent of
 * which process happened to be quicker:
 * - what dials a balancer waits for the workers that dial in to it (they
 *   have registered), so its first requests are spread over them too;
 * - a client of a service (`service` on a client) waits for the servers that
 *   register it (they have registered), so it finds them all;
 * - a producer waits for the consumers of its broker (they have
 *   subscribed), so they see its first messages as they are published.
 * Only instances on one host imply each other (what another host runs is
 * not waited for by name), and an implied dependency that would close a
 * cycle is left out.
 */
import { type Instance, type RoleInfo, roleSpec } from "../config/mod.ts";

/** The instance names `instance` references, except instances of its own role (peers). */
export function dependenciesOf(instance: Instance, byName: Map<string, Instance>): string[] {
  const deps = new Set<string>();
  for (const targets of Object.values(instance.refs)) {
    for (const target of targets) {
      if (byName.get(target)?.role !== instance.role) deps.add(target);
    }
  }
  return [...deps];
}

/** "localhost" and "127.0.0.1" are one host; case does not matter. */
export function sameHost(a: unknown, b: unknown): boolean {
  const norm = (h: unknown) => String(h ?? "").toLowerCase().replace(/^localhost$/, "127.0.0.1");
  return norm(a) === norm(b);
}

/** Roles that register a `service` with binders, and roles that resolve one. */
const REGISTERS = new Set(["server"]);
const RESOLVES = new Set(["client"]);

/** The instances `instance` references through `key` whose port is the main one (`port`). */
function dialed(instance: Instance, roles: Record<string, RoleInfo>): Set<string> {
  const spec = roleSpec(roles[instance.role]);
  const names = new Set<string>();
  for (const [key, targets] of Object.entries(instance.refs)) {
    if ((spec[key]?.refPort ?? "port") === "port") { for (const t of targets) names.add(t); }
  }
  return names;
}

/** The instances `instance` references through another port (a worker's balancer). */
function dialedIn(instance: Instance, roles: Record<string, RoleInfo>): Set<string> {
  const spec = roleSpec(roles[instance.role]);
  const names = new Set<string>();
  for (const [key, targets] of Object.entries(instance.refs)) {
    if ((spec[key]?.refPort ?? "port") !== "port") { for (const t of targets) names.add(t); }
  }
  return names;
}

/**
 * Every instance's dependencies: its references and what the topology
 * implies (see the module's comment), by name.
 */
export function dependencyMap(
  instances: Instance[],
  roles: Record<string, RoleInfo>,
): Map<string, string[]> {
  const byName = new Map(instances.map((i) => [i.name, i]));
  const deps = new Map(instances.map((i) => [i.name, dependenciesOf(i, byName)]));
  // Who dials in to each instance (a balancer's workers), who registers each service,
  // who consumes from each broker.
  const dialersIn = new Map<string, Instance[]>();
  const registrants = new Map<string, Instance[]>();
  const consumers = new Map<string, Instance[]>();
  const add = (map: Map<string, Instance[]>, key: string, instance: Instance) =>
    map.set(key, [...(map.get(key) ?? []), instance]);
  for (const instance of instances) {
    for (const target of dialedIn(instance, roles)) add(dialersIn, target, instance);
    const service = instance.options.service;
    if (REGISTERS.has(instance.role) && typeof service === "string") {
      add(registrants, service, instance);
    }
    if (instance.role === "consumer") {
      for (const broker of instance.refs.broker ?? []) add(consumers, broker, instance);
    }
  }
  for (const instance of instances) {
    const implied: Instance[] = [];
    for (const target of dialed(instance, roles)) implied.push(...dialersIn.get(target) ?? []);
    const service = instance.options.service;
    if (RESOLVES.has(instance.role) && typeof service === "string") {
      implied.push(...registrants.get(service) ?? []);
    }
    if (instance.role === "producer") {
      for (const broker of instance.refs.broker ?? []) implied.push(...consumers.get(broker) ?? []);
    }
    const mine = deps.get(instance.name)!;
    for (const other of implied) {
      if (other === instance || other.role === instance.role || mine.includes(other.name)) continue;
      if (!sameHost(other.host, instance.host) || reaches(deps, other.name, instance.name)) {
        continue;
      }
      mine.push(other.name);
    }
  }
  return deps;
}

/** Whether `from` depends on `to`, directly or not. */
function reaches(deps: Map<string, string[]>, from: string, to: string): boolean {
  const seen = new Set<string>();
  const stack = [from];
  while (stack.length > 0) {
    const name = stack.pop()!;
    if (name === to) return true;
    if (seen.has(name)) continue;
    seen.add(name);
    stack.push(...deps.get(name) ?? []);
  }
  return false;
}

/**
 * The lines that say an instance is ready, as its role logs them at info:
 * for a role that does not listen, instead of `sys.ping` (a worker has
 * registered with its balancer, a consumer has subscribed); for a server
 * registering a service with binders of the topology, besides `sys.ping`
 * (it has registered, so what resolves the service finds it).
 */
export const READY_LINES: Readonly<
  Record<string, { line: RegExp; when: (instance: Instance, listens: boolean) => boolean }>
> = {
  worker: { line: /Registered with \S+ as /, when: (_, listens) => !listens },
  consumer: { line: /Subscribed to \S/, when: (_, listens) => !listens },
  // A balancer in --mode tcp passes sys.ping on to a backend: it is ready once it listens.
  balancer: { line: /Listening on \S/, when: (_, listens) => !listens },
  server: {
    line: /Registered as \S+ with binder /,
    when: (i) => typeof i.options.service === "string" && (i.refs.binders ?? []).length > 0,
  },
};

/** The ready line of an instance, when its role has one and its log level shows it. */
export function readyLineOf(instance: Instance, listens: boolean): RegExp | undefined {
  const ready = READY_LINES[instance.role];
  if (ready === undefined || !ready.when(instance, listens)) return undefined;
  const level = String(instance.options.logLevel ?? "info");
  return ["trace", "debug", "info"].includes(level) ? ready.line : undefined;
}
