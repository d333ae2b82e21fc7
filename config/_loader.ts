/**
 * The topology loader proper: checks a parsed TOML document against the role
 * table, expands replicas, checks names and ports, and resolves references,
 * collecting every problem with its line.
 */
import { LineLocator } from "./_locate.ts";
import { nameTable, resolveValue, type Target } from "./_resolve.ts";
import { didYouMean } from "./_suggest.ts";
import { UsageError } from "./errors.ts";
import {
  HOST_OPTION,
  type OptionDef,
  type Options,
  type OptionSpec,
  type RoleInfo,
} from "./spec.ts";
import type { Instance, ParseTopologyOptions, RestartPolicy, Topology } from "./topology.ts";
import {
  convertValue,
  isReferenceName,
  mergeOptions,
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
/** Most problems listed, one per line; the rest are counted. */
const MAX_PROBLEMS = 20;
/** Returned by a failed conversion, whose problem is already recorded. */
const INVALID = Symbol("invalid");

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
}

interface Problem {
  line?: number;
  text: string;
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
  #where: LineLocator;
  #problems: Problem[] = [];
  #defaults: Record<string, unknown> = {};
  /** `host` of `[defaults]`, for every instance's placement. */
  #defaultHost?: string;
  #entryOf = new Map<Instance, Entry>();

  constructor(text: string, options: ParseTopologyOptions) {
    this.#file = options.file;
    this.#roles = options.roles;
    this.#where = new LineLocator(text);
  }

  load(document: Record<string, unknown>): Topology {
    const entries: Entry[] = [];
    for (const [key, value] of Object.entries(document)) {
      const line = this.#where.key("", key) ?? this.#where.header(key) ??
        this.#where.header(`${key}#0`);
      const isEntryList = Array.isArray(value) && value.length > 0 && value.every(isTable);
      if (key === "defaults") {
        if (isTable(value)) this.#defaults = value;
        else this.#problem(line, `defaults: must be a table ([defaults])`);
      } else if (Object.hasOwn(this.#roles, key)) {
        if (Array.isArray(value) && value.every(isTable)) {
          value.forEach((table, i) => entries.push(this.#entry(key, i, table)));
        } else {
          const hint = isTable(value) ? `, write [[${key}]] instead of [${key}]` : "";
          this.#problem(line, `${key}: must be an array of tables ([[${key}]])${hint}`);
        }
      } else {
        const roleNames = Object.keys(this.#roles);
        const what = isEntryList
          ? "unknown role"
          : isTable(value)
          ? "unknown table"
          : "unknown key";
        const hint = didYouMean(key, isEntryList ? roleNames : ["defaults", ...roleNames]);
        this.#problem(line, `${key}: ${what}${hint}`);
      }
    }
    const { layers, restart } = this.#readDefaults();
    if (entries.length === 0 && this.#problems.length === 0) {
      this.#problem(undefined, "no instances: add a [[role]] table such as [[server]]");
    }
    this.#check();
    const instances = entries.flatMap((entry) =>
      this.#expand(entry, layers.get(entry.role)!, restart)
    );
    this.#checkNames(entries, instances);
    this.#checkPorts(instances);
    this.#check();
    const names = nameTable(instances);
    for (const instance of instances) this.#resolve(instance, names);
    this.#check();
    return { file: this.#file, instances };
  }

  /** Reads one `[[role]]` entry: topology keys, then the role's options. */
  #entry(role: string, index: number, table: Record<string, unknown>): Entry {
    const section = `${role}#${index}`;
    const spec = roleSpec(this.#roles[role]);
    const entry: Entry = { role, section, group: role, replicas: 1, options: {} };
    for (const [key, raw] of Object.entries(table)) {
      const label = `${role}.${key}`;
      const line = this.#line(section, key);
      const camel = toCamel(key);
      if (key === "name") {
        if (typeof raw === "string" && isReferenceName(raw)) entry.group = raw;
        else {
          const problem = `is not a valid name (letters, digits, ".", "_", "-")`;
          this.#problem(line, `${label}: ${JSON.stringify(raw)} ${problem}`);
        }
      } else if (key === "replicas") {
        const replicas = this.#convert(label, REPLICAS, raw, line);
        if (replicas !== INVALID) entry.replicas = replicas as number;
      } else if (key === "restart") {
        const restart = this.#convert(label, RESTART, raw, line);
        if (restart !== INVALID) entry.restart = restart as RestartPolicy;
      } else if (key === "host" && !Object.hasOwn(spec, "host")) {
        const host = this.#convert(label, HOST_OPTION, raw, line);
        if (host !== INVALID) entry.host = host as string;
      } else if (toSnake(camel) === key && Object.hasOwn(spec, camel)) {
        const value = this.#convert(label, spec[camel], raw, line);
        if (value !== INVALID) entry.options[camel] = value;
      } else {
        const known = [
          ...ENTRY_KEYS,
          ...Object.keys(spec).filter((k) => k !== "name").map(toSnake),
        ];
        this.#problem(line, `${label}: unknown key${didYouMean(key, known)}`);
      }
    }
    return entry;
  }

  /** Converts `[defaults]` once for each role that takes each key. */
  #readDefaults(): { layers: Map<string, Options>; restart?: RestartPolicy } {
    const layers = new Map<string, Options>(Object.keys(this.#roles).map((role) => [role, {}]));
    let restart: RestartPolicy | undefined;
    for (const [key, raw] of Object.entries(this.#defaults)) {
      const label = `defaults.${key}`;
      const line = this.#line("defaults", key);
      const camel = toCamel(key);
      const takers = Object.entries(this.#roles).filter(([, info]) =>
        toSnake(camel) === key && Object.hasOwn(roleSpec(info), camel)
      );
      if (key === "restart") {
        const value = this.#convert(label, RESTART, raw, line);
        if (value !== INVALID) restart = value as RestartPolicy;
      } else if (key === "name" || key === "replicas") {
        this.#problem(line, `${label}: cannot be a default (set it on each entry)`);
      } else if (key === "host" && takers.length === 0) {
        const host = this.#convert(label, HOST_OPTION, raw, line);
        if (host !== INVALID) this.#defaultHost = host as string;
      } else if (takers.length === 0) {
        const known = new Set(["restart"]);
        for (const info of Object.values(this.#roles)) {
          for (const option of Object.keys(roleSpec(info))) known.add(toSnake(option));
        }
        known.delete("name");
        known.add("host");
        this.#problem(line, `${label}: unknown key: no role takes it${didYouMean(key, known)}`);
      } else {
        for (const [role, info] of takers) {
          const value = this.#convert(label, roleSpec(info)[camel], raw, line);
          if (value !== INVALID) layers.get(role)![camel] = value;
          if (value !== INVALID && key === "host") this.#defaultHost = value as string;
        }
      }
    }
    return { layers, restart };
  }

  /** The instances of one entry: its replicas, each port option counting up from the entry's. */
  #expand(entry: Entry, layer: Options, restart?: RestartPolicy): Instance[] {
    const spec = roleSpec(this.#roles[entry.role]);
    const base = mergeOptions(spec, layer, entry.options);
    const many = entry.replicas > 1;
    const instances: Instance[] = [];
    for (let replica = 1; replica <= entry.replicas; replica++) {
      const name = many ? `${entry.group}-${replica}` : entry.group;
      const options: Options = { ...base, name };
      for (const key of portKeys(spec)) {
        const first = base[key];
        if (typeof first !== "number" || first === 0) continue;
        options[key] = first + replica - 1;
        if (first + replica - 1 > 65535) {
          const label = `${entry.role}.${toSnake(key)}`;
          const problem = `replica ${name} would get port ${first + replica - 1}, above 65535`;
          this.#problem(this.#line(entry.section, toSnake(key)), `${label}: ${problem}`);
        }
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
        const first = this.#line(other.section, "name");
        const where = first === undefined ? "" : ` (first at line ${first})`;
        const text = `${entry.role}.name: duplicate name ${JSON.stringify(name)}${where}`;
        this.#problem(this.#line(entry.section, "name"), text);
      }
    };
    for (const entry of entries) claim(entry.group, entry);
    for (const instance of instances) claim(instance.name, this.#entryOf.get(instance)!);
  }

  /** No two listeners on one host share a non-zero port. */
  #checkPorts(instances: Instance[]): void {
    const taken = new Map<string, { instance: Instance; key: string }>();
    for (const instance of instances) {
      for (const key of portKeys(roleSpec(this.#roles[instance.role]))) {
        const port = instance.options[key];
        if (typeof port !== "number" || port === 0) continue;
        const host = instance.host.toLowerCase().replace(/^localhost$/, "127.0.0.1");
        const address = `${host}:${port}`;
        const other = taken.get(address);
        if (other === undefined) {
          taken.set(address, { instance, key });
          continue;
        }
        const users = other.instance === instance
          ? `twice by ${instance.name} (${toSnake(other.key)} and ${toSnake(key)})`
          : `by both ${other.instance.name} and ${instance.name}`;
        const label = `${instance.role}.${toSnake(key)}`;
        this.#problem(this.#lineOf(instance, key), `${label}: ${address} is used ${users}`);
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
        const label = `${this.#origin(instance, key) === "defaults" ? "defaults" : instance.role}`;
        this.#problem(this.#lineOf(instance, key), `${label}.${toSnake(key)}: ${result}`);
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
    return origin === undefined ? this.#line(section) : this.#line(origin, toSnake(key));
  }

  /** The line of `key` in `section`, else of the section's header (or the root key for inline tables). */
  #line(section: string, key?: string): number | undefined {
    const line = key === undefined ? undefined : this.#where.key(section, key);
    return line ?? this.#where.header(section) ?? this.#where.key("", section.split("#")[0]);
  }

  #convert(label: string, def: OptionDef, raw: unknown, line?: number): unknown {
    try {
      return convertValue(label, def, raw, { names: true });
    } catch (error) {
      if (!(error instanceof UsageError)) throw error;
      this.#problem(line, error.message);
      return INVALID;
    }
  }

  #problem(line: number | undefined, text: string): void {
    if (!this.#problems.some((p) => p.line === line && p.text === text)) {
      this.#problems.push({ line, text });
    }
  }

  /**
   * Throws every problem so far, in line order, one per line of the message
   * (each line names the file, so each reads alone, as a compiler's do).
   */
  #check(): void {
    if (this.#problems.length === 0) return;
    const sorted = this.#problems.toSorted((a, b) => (a.line ?? Infinity) - (b.line ?? Infinity));
    const lines = sorted.slice(0, MAX_PROBLEMS).map(({ line, text }) =>
      `Cannot load ${this.#file}: ${line === undefined ? "" : `line ${line}: `}${text}`
    );
    const rest = sorted.length - lines.length;
    if (rest > 0) lines.push(`Cannot load ${this.#file}: ${rest} more problems not shown`);
    throw new UsageError(lines.join("\n"));
  }
}
