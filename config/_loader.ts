/**
 * The topology loader proper: checks a parsed TOML document against the role
 * table, expands replicas, checks names and ports, and resolves references,
 * collecting every problem with its line.
 */
import { nameTable, resolveValue, type Target } from "./_resolve.ts";
import { didYouMean } from "./_suggest.ts";
import { keyText } from "./_quote.ts";
import { INVALID, Problems } from "./_problems.ts";
import {
  HOST_OPTION,
  type OptionDef,
  type Options,
  type OptionSpec,
  type RoleInfo,
} from "./spec.ts";
import type { Instance, ParseTopologyOptions, RestartPolicy, Topology } from "./topology.ts";
import { readSecurity, type TopologyTls } from "./_security.ts";
import { anchorOptions, anchorTls } from "./_paths.ts";
import { hostsClash, LISTEN_ADDRESSES, listenHost, listensAt } from "./_listen.ts";
import {
  formatAddress,
  isReferenceName,
  mergeOptions,
  portKeysOf,
  roleSpec,
  toCamel,
  toSnake,
} from "./values.ts";

const RESTART: OptionDef = {
  type: "choice",
  description: "What to do when the instance exits",
  choices: ["always", "on-failure", "no"],
};
const REPLICAS: OptionDef = { type: "integer", description: "How many copies", min: 1 };
/**
 * Keys an entry takes besides its role's options. `host` is one for roles that
 * do not listen: it only places the instance on a machine.
 */
const ENTRY_KEYS = ["name", "replicas", "restart", "host"];
/** The longest name an entry may have. */
const MAX_NAME = 63;
/** Instances a topology may have unless the caller says otherwise (`dist up --max-instances`). */
export const DEFAULT_MAX_INSTANCES = 256;
const MAX_PORT = 65535;

/** One `[[role]]` table, read and converted. */
interface Entry {
  role: string;
  /** Its section for the line locator: "server#0". */
  section: string;
  group: string;
  replicas: number;
  restart?: RestartPolicy;
  /** `host` of an entry whose role does not listen (placement only). */
  host?: string;
  options: Options;
  /** Its `name` was not valid: its instances are not checked for clashes. */
  badName?: boolean;
  /** Options whose value was not valid (so not set): not checked for clashes. */
  invalid: Set<string>;
}

function isTable(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value) &&
    !(value instanceof Date);
}

function portKeys(spec: OptionSpec): string[] {
  return Object.keys(spec).filter((key) => spec[key].type === "port");
}

/** Validates a parsed document and expands it into instances, collecting problems. */
export class TopologyLoader {
  #file: string;
  #roles: Record<string, RoleInfo>;
  #options: ParseTopologyOptions;
  #problems: Problems;
  #defaults: Record<string, unknown> = {};
  /** `[defaults]` keys whose value was not valid. */
  #invalidDefaults = new Set<string>();
  /** Names of entries under tables that are not roles: references to them are not problems too. */
  #orphans = new Set<string>();
  /** `host` of `[defaults]`, for every instance's placement. */
  #defaultHost?: string;
  #entryOf = new Map<Instance, Entry>();
  /** `[security]`'s TLS settings, when it asks for TLS. */
  #tls?: TopologyTls;

  constructor(text: string, options: ParseTopologyOptions) {
    this.#file = options.file;
    this.#roles = options.roles;
    this.#options = options;
    this.#problems = new Problems(options.file, text);
  }

  load(document: Record<string, unknown>): Topology {
    const entries: Entry[] = [];
    for (const [key, value] of Object.entries(document)) {
      const line = this.#problems.ofTopLevel(key);
      const isEntryList = Array.isArray(value) && value.length > 0 && value.every(isTable);
      if (key === "defaults") {
        if (isTable(value)) this.#defaults = value;
        else this.#problems.add(line, `defaults: must be a table ([defaults])`);
      } else if (key === "security") {
        if (isTable(value)) {
          this.#tls = readSecurity(
            value,
            (k, text) => this.#problems.add(this.#problems.line(key, k), text),
          );
        } else this.#problems.add(line, `security: must be a table ([security])`);
      } else if (Object.hasOwn(this.#roles, key)) {
        if (Array.isArray(value) && value.every(isTable)) {
          value.forEach((table, i) => entries.push(this.#entry(key, i, table)));
        } else {
          const hint = isTable(value) ? `, write [[${key}]] instead of [${key}]` : "";
          this.#problems.add(line, `${key}: must be an array of tables ([[${key}]])${hint}`);
        }
      } else {
        if (isEntryList) {
          for (const table of value) this.#orphans.add(String(table.name ?? key));
        }
        const roleNames = Object.keys(this.#roles);
        const what = isEntryList
          ? "unknown role"
          : isTable(value)
          ? "unknown table"
          : "unknown key";
        const hint = didYouMean(
          key,
          isEntryList ? roleNames : ["defaults", "security", ...roleNames],
        );
        this.#problems.add(line, `${keyText(key)}: ${what}${hint}`);
      }
    }
    const { layers, restart } = this.#readDefaults();
    if (entries.length === 0 && this.#problems.count === 0) {
      this.#problems.add(undefined, "no instances: add a [[role]] table such as [[server]]");
    }
    // Every later check goes on past problems found so far, so that one run
    // shows them all; what a problem made unknown (a bad port, a bad name)
    // is left out of the checks that would only repeat it.
    const bases = entries.map((entry) =>
      mergeOptions(roleSpec(this.#roles[entry.role]), layers.get(entry.role)!, entry.options)
    );
    // Counted before any instance is made: a hostile file costs no more than its size.
    if (!this.#checkCounts(entries, bases)) {
      this.#problems.check();
      return { file: this.#file, instances: [], ...this.#tlsPart() };
    }
    const instances = entries.flatMap((entry, i) => this.#expand(entry, bases[i], restart));
    this.#checkNames(entries, instances);
    this.#checkPorts(instances);
    const names = nameTable(instances);
    for (const instance of instances) this.#resolve(instance, names);
    const paths = this.#options.paths;
    for (const instance of paths === undefined ? [] : instances) {
      anchorOptions(instance.options, roleSpec(this.#roles[instance.role]), paths!);
    }
    const topology = { file: this.#file, instances, ...this.#tlsPart() };
    for (const problem of this.#options.check?.(topology) ?? []) {
      this.#problems.add(problem.line, problem.text);
    }
    this.#problems.check();
    return topology;
  }

  /**
   * How many instances the entries make, and how far their ports count up,
   * checked by arithmetic on each entry (no instance made).
   *
   * @returns whether the instances can be made
   */
  #checkCounts(entries: Entry[], bases: Options[]): boolean {
    const max = this.#options.maxInstances ?? DEFAULT_MAX_INSTANCES;
    const total = entries.reduce((sum, entry) => sum + entry.replicas, 0);
    let fits = true;
    if (total > max) {
      fits = false;
      // Named at the largest entry, where the count most likely went wrong.
      const largest = entries.reduce((a, b) => b.replicas > a.replicas ? b : a);
      const limit = `more than a topology may have (${max}; dist up --max-instances N raises it)`;
      if (largest.replicas > 1) {
        const made = total === largest.replicas ? "" : ` would make ${total} instances,`;
        this.#problems.add(
          this.#problems.line(largest.section, "replicas"),
          `${largest.role}.replicas: ${largest.replicas}${made} ${limit}`,
        );
      } else this.#problems.add(undefined, `${total} instances: ${limit}`);
    }
    entries.forEach((entry, i) => {
      for (const key of [...portKeys(roleSpec(this.#roles[entry.role])), ...LISTEN_ADDRESSES]) {
        const first = listensAt(key, bases[i][key])?.port;
        if (first === undefined) continue;
        const last = first + entry.replicas - 1;
        if (last <= MAX_PORT) continue;
        fits = false;
        const label = `${entry.role}.${toSnake(key)}`;
        const name = `${entry.group}-${entry.replicas}`;
        this.#problems.add(
          this.#problems.line(entry.section, toSnake(key)),
          `${label}: ${entry.replicas} replicas from port ${first} go up to ${last} ` +
            `(${name}), above ${MAX_PORT}`,
        );
      }
    });
    return fits;
  }

  /** Reads one `[[role]]` entry: topology keys, then the role's options. */
  #entry(role: string, index: number, table: Record<string, unknown>): Entry {
    const section = `${role}#${index}`;
    const spec = roleSpec(this.#roles[role]);
    const entry: Entry = {
      role,
      section,
      group: role,
      replicas: 1,
      options: {},
      invalid: new Set(),
    };
    for (const [key, raw] of Object.entries(table)) {
      const label = `${role}.${keyText(key)}`;
      const line = this.#problems.line(section, key);
      const camel = toCamel(key);
      if (key === "name") {
        if (typeof raw === "string" && raw.length > MAX_NAME) {
          // hostile47 Q12: a 20,000-character name never became ready, and nothing said why.
          entry.badName = true;
          this.#problems.add(
            line,
            `${label}: ${raw.length} characters, at most ${MAX_NAME} (a DNS label's limit: ` +
              `exports name hosts after it)`,
          );
        } else if (typeof raw === "string" && isReferenceName(raw)) entry.group = raw;
        else {
          entry.badName = true;
          const problem = `is not a valid name (letters, digits, ".", "_", "-")`;
          this.#problems.add(line, `${label}: ${JSON.stringify(raw)} ${problem}`);
        }
      } else if (key === "replicas") {
        const replicas = this.#problems.convert(label, REPLICAS, raw, line);
        if (replicas !== INVALID) entry.replicas = replicas as number;
      } else if (key === "restart") {
        const restart = this.#problems.convert(label, RESTART, raw, line);
        if (restart !== INVALID) entry.restart = restart as RestartPolicy;
      } else if (key === "host" && !Object.hasOwn(spec, "host")) {
        const host = this.#problems.convert(label, HOST_OPTION, raw, line);
        if (host !== INVALID) entry.host = host as string;
      } else if (toSnake(camel) === key && Object.hasOwn(spec, camel)) {
        const value = this.#problems.convert(label, spec[camel], raw, line);
        if (value !== INVALID) entry.options[camel] = value;
        else entry.invalid.add(camel);
      } else {
        const known = [
          ...ENTRY_KEYS,
          ...Object.keys(spec).filter((k) => k !== "name").map(toSnake),
        ];
        this.#problems.add(line, `${label}: unknown key${didYouMean(key, known)}`);
      }
    }
    return entry;
  }

  /** Converts `[defaults]` once for each role that takes each key. */
  #readDefaults(): { layers: Map<string, Options>; restart?: RestartPolicy } {
    const layers = new Map<string, Options>(Object.keys(this.#roles).map((role) => [role, {}]));
    let restart: RestartPolicy | undefined;
    for (const [key, raw] of Object.entries(this.#defaults)) {
      const label = `defaults.${keyText(key)}`;
      const line = this.#problems.line("defaults", key);
      const camel = toCamel(key);
      const takers = Object.entries(this.#roles).filter(([, info]) =>
        toSnake(camel) === key && Object.hasOwn(roleSpec(info), camel)
      );
      if (key === "restart") {
        const value = this.#problems.convert(label, RESTART, raw, line);
        if (value !== INVALID) restart = value as RestartPolicy;
      } else if (key === "name" || key === "replicas") {
        this.#problems.add(line, `${label}: cannot be a default (set it on each entry)`);
      } else if (key === "host" && takers.length === 0) {
        const host = this.#problems.convert(label, HOST_OPTION, raw, line);
        if (host !== INVALID) this.#defaultHost = host as string;
      } else if (takers.length === 0) {
        const known = new Set(["restart"]);
        for (const info of Object.values(this.#roles)) {
          for (const option of Object.keys(roleSpec(info))) known.add(toSnake(option));
        }
        known.delete("name");
        known.add("host");
        this.#problems.add(
          line,
          `${label}: unknown key: no role takes it${didYouMean(key, known)}`,
        );
      } else {
        for (const [role, info] of takers) {
          const value = this.#problems.convert(label, roleSpec(info)[camel], raw, line);
          if (value === INVALID) this.#invalidDefaults.add(camel);
          if (value !== INVALID) layers.get(role)![camel] = value;
          if (value !== INVALID && key === "host") this.#defaultHost = value as string;
        }
      }
    }
    return { layers, restart };
  }

  /** The instances of one entry: its replicas, each port option counting up from the entry's. */
  #expand(entry: Entry, base: Options, restart?: RestartPolicy): Instance[] {
    const spec = roleSpec(this.#roles[entry.role]);
    const ports = portKeys(spec);
    const many = entry.replicas > 1;
    const instances: Instance[] = [];
    for (let replica = 1; replica <= entry.replicas; replica++) {
      const name = many ? `${entry.group}-${replica}` : entry.group;
      const options: Options = { ...base, name };
      // #checkCounts made sure every port stays within range.
      for (const key of [...ports, ...LISTEN_ADDRESSES]) {
        const first = listensAt(key, base[key]);
        if (first === undefined) continue;
        const port = first.port + replica - 1;
        options[key] = first.host === undefined ? port : formatAddress({ host: first.host, port });
      }
      const instance: Instance = {
        name,
        role: entry.role,
        group: entry.group,
        host: (options.host as string | undefined) ?? entry.host ?? this.#defaultHost ??
          HOST_OPTION.default as string,
        ...(many ? { replica } : {}),
        options,
        restart: entry.restart ?? restart ?? this.#roles[entry.role].restart ?? "on-failure",
        refs: {},
      };
      this.#entryOf.set(instance, entry);
      instances.push(instance);
    }
    return instances;
  }

  /** Entry names and instance names are unique together. */
  #checkNames(entries: Entry[], instances: Instance[]): void {
    const seen = new Map<string, Entry>();
    const claim = (name: string, entry: Entry) => {
      const other = seen.get(name);
      if (other === undefined) seen.set(name, entry);
      else if (other !== entry) {
        const first = this.#problems.line(other.section, "name");
        const where = first === undefined ? "" : ` (first at line ${first})`;
        const text = `${entry.role}.name: duplicate name ${JSON.stringify(name)}${where}`;
        this.#problems.add(this.#problems.line(entry.section, "name"), text);
      }
    };
    for (const entry of entries) if (!entry.badName) claim(entry.group, entry);
    for (const instance of instances) {
      const entry = this.#entryOf.get(instance)!;
      if (!entry.badName) claim(instance.name, entry);
    }
  }

  /** No two listeners on one host share a non-zero port (a wildcard host takes every address of its family). */
  #checkPorts(instances: Instance[]): void {
    const taken = new Map<number, { instance: Instance; key: string; host: string }[]>();
    for (const instance of instances) {
      const entry = this.#entryOf.get(instance)!;
      const listens = [
        ...portKeysOf(this.#roles[instance.role], instance.options),
        ...LISTEN_ADDRESSES,
      ];
      for (const key of listens) {
        const listen = listensAt(key, instance.options[key]);
        if (listen === undefined) continue;
        const port = listen.port;
        // A value that was not valid fell back to the default: no clash to report for it.
        if (entry.invalid.has(key) || this.#invalidDefaults.has(key)) continue;
        const host = listenHost(listen.host ?? instance.host);
        const claims = taken.get(port) ?? [];
        const other = claims.find((claim) => hostsClash(claim.host, host));
        if (other === undefined) {
          taken.set(port, [...claims, { instance, key, host }]);
          continue;
        }
        const users = other.instance === instance
          ? `twice by ${instance.name} (${toSnake(other.key)} and ${toSnake(key)})`
          : `by both ${other.instance.name} and ${instance.name}`;
        const label = `${instance.role}.${toSnake(key)}`;
        // A port nobody wrote (a balancer's worker_port) is a surprise: say where it came from.
        const own = this.#origin(instance, key) === undefined
          ? ` (${
            toSnake(key)
          } ${port} is the built-in default: give ${instance.group} another, or 0)`
          : "";
        const address = other.host === host
          ? `${formatAddress({ host, port })} is`
          : `port ${port} on ${other.host} and on ${host} (a wildcard host takes every address) is`;
        this.#problems.add(this.#lineOf(instance, key), `${label}: ${address} used ${users}${own}`);
      }
    }
  }

  /** Replaces names in the instance's `ref` options by "host:port". */
  #resolve(instance: Instance, names: Map<string, Target[]>): void {
    const spec = roleSpec(this.#roles[instance.role]);
    for (const [key, def] of Object.entries(spec)) {
      const value = instance.options[key];
      if (!def.ref || value === undefined) continue;
      const result = resolveValue(def, value, names);
      if (typeof result === "string") {
        // Naming an entry whose table is not a role: that table's problem says it all.
        const items = Array.isArray(value) ? value : [value];
        if (items.some((item) => this.#orphans.has(String(item)) && !names.has(String(item)))) {
          continue;
        }
        const label = `${this.#origin(instance, key) === "defaults" ? "defaults" : instance.role}`;
        this.#problems.add(this.#lineOf(instance, key), `${label}.${toSnake(key)}: ${result}`);
        continue;
      }
      instance.options[key] = result.value;
      if (result.targets.length > 0) instance.refs[key] = result.targets;
    }
  }

  /** Where an instance's option was set: its entry's section, "defaults", or undefined (built-in). */
  #origin(instance: Instance, key: string): string | undefined {
    const entry = this.#entryOf.get(instance)!;
    if (Object.hasOwn(entry.options, key)) return entry.section;
    return Object.hasOwn(this.#defaults, toSnake(key)) ? "defaults" : undefined;
  }

  #lineOf(instance: Instance, key: string): number | undefined {
    const origin = this.#origin(instance, key);
    const section = this.#entryOf.get(instance)!.section;
    return origin === undefined
      ? this.#problems.line(section)
      : this.#problems.line(origin, toSnake(key));
  }

  #tlsPart(): { tls?: TopologyTls } {
    const paths = this.#options.paths;
    if (this.#tls === undefined) return {};
    return { tls: paths === undefined ? this.#tls : anchorTls(this.#tls, paths) };
  }
}
