/**
 * The topology file: a TOML description of a whole cluster, validated in one
 * pass and expanded into the list of instances `dist up` runs.
 *
 * ```toml
 * [defaults]          # any option of any role, applied where the role takes it
 * log_level = "info"
 *
 * [[server]]          # an array of tables per role
 * replicas = 2        # server-1 on 5557, server-2 on 5558
 * port = 5557
 * ```
 */
import { parse, TomlError } from "smol-toml";
import { TopologyLoader } from "./_loader.ts";
export { DEFAULT_MAX_INSTANCES } from "./_loader.ts";
export { throwProblems, type TopologyProblem } from "./errors.ts";
import { nameTable, resolveValue } from "./_resolve.ts";
import { didYouMean } from "./_suggest.ts";
import { type TopologyProblem, UsageError } from "./errors.ts";
import { readUserFile, TOPOLOGY_RULE } from "./user_files.ts";
import type { Options, OptionSpec, RoleInfo } from "./spec.ts";
import { toKebab } from "./values.ts";
import type { TopologyTls } from "./_security.ts";
import type { PathBase } from "./_paths.ts";
import { dirname, resolve } from "node:path";
export type { TopologyTls } from "./_security.ts";

/** What `dist up` does when an instance exits. */
export type RestartPolicy = "always" | "on-failure" | "no";

/** One process of the cluster. */
export interface Instance {
  /** Unique name: the entry's name, or `name-1`..`name-N` for replicas. */
  name: string;
  role: string;
  /** The name of the entry it comes from (the same as `name` without replicas). */
  group: string;
  /** 1..N when the entry has `replicas` > 1. */
  replica?: number;
  /**
   * The machine it is placed on (`dist up --on HOST` starts the instances
   * whose host this is): `host` of the entry, else of `[defaults]`, else
   * 127.0.0.1. Every instance has one, whether or not its role listens.
   */
  host: string;
  /**
   * Fully merged: built-in defaults < `[defaults]` < the entry; converted;
   * references resolved to "host:port"; includes `name` (and `host` and
   * `port` where the role takes them: roles that listen).
   */
  options: Options;
  restart: RestartPolicy;
  /** For each `ref` option that named instances: the instance names it resolved to. */
  refs: Record<string, string[]>;
}

/** A loaded topology file. */
export interface Topology {
  file: string;
  instances: Instance[];
  /** `[security]`'s TLS settings, when it asks for TLS (dist up applies them: launch/tls.ts). */
  tls?: TopologyTls;
}

/** How {@link parseTopology} reads a text. */
export interface ParseTopologyOptions {
  /** The file name used in messages. */
  file: string;
  /** The role table: which `[[role]]` tables exist and which keys each takes. */
  roles: Record<string, RoleInfo>;
  /**
   * Most instances the file may make (default 256): counted from `replicas`
   * before any instance is made, so a hostile file is refused at once.
   */
  maxInstances?: number;
  /**
   * More checks of the expanded topology (a launcher's: reference cycles),
   * whose problems are listed with the loader's own in one error. It sees
   * the topology even when other problems were found (an unknown reference
   * is then left unresolved).
   */
  check?: (topology: Topology) => TopologyProblem[];
  /**
   * Where the file's relative paths are taken from (its folder: config/_paths.ts);
   * left out, they stay as written.
   */
  paths?: PathBase;
}

/**
 * Parses and validates a topology text and expands it into instances.
 *
 * @throws {UsageError} naming the file, the line and the key path of every
 *   problem, one per line of the message, e.g. `Cannot load cluster.toml:
 *   line 12: balancer.bakends: unknown key (did you mean "backends"?)`
 */
export function parseTopology(text: string, options: ParseTopologyOptions): Topology {
  let document: Record<string, unknown>;
  try {
    document = parse(text);
  } catch (error) {
    if (!(error instanceof TomlError)) throw error;
    const message = error.message.split("\n")[0].replace(/^Invalid TOML document: /, "");
    throw new UsageError(`Cannot load ${options.file}: line ${error.line}: ${message}`, {
      cause: error,
    });
  }
  return new TopologyLoader(text, options).load(document);
}

/**
 * Reads and parses a topology file.
 *
 * @throws {UsageError} when the file cannot be read or is not a valid topology
 */
export async function loadTopology(
  path: string,
  roles: Record<string, RoleInfo>,
  options: Omit<ParseTopologyOptions, "file" | "roles"> = {},
): Promise<Topology> {
  let text: string;
  try {
    text = await readUserFile("topology file", path, TOPOLOGY_RULE); // Bounded (h48 P1).
  } catch (error) {
    if (error instanceof UsageError) throw error;
    const reason = error instanceof Error ? error.message : String(error);
    throw new UsageError(`Cannot read topology file ${path}: ${reason}`, { cause: error });
  }
  return parseTopology(text, {
    ...options,
    file: path,
    roles,
    paths: { folder: dirname(resolve(path)), written: true },
  });
}

/**
 * The instance called `name`.
 *
 * @throws {UsageError} when there is none (with a did-you-mean)
 */
export function findInstance(topology: Topology, name: string): Instance {
  const found = topology.instances.find((instance) => instance.name === name);
  if (found !== undefined) return found;
  const hint = didYouMean(name, topology.instances.map((instance) => instance.name));
  throw new UsageError(`No instance ${JSON.stringify(name)} in ${topology.file}${hint}`);
}

/**
 * Resolves instance names given on the command line (`dist client --config
 * cluster.toml --connect server-2`) against a topology; values that are
 * already "host:port" pass through.
 *
 * @throws {UsageError} for an unknown name, naming the flag
 */
export function resolveReferences(
  options: Options,
  context: { topology: Topology; spec: OptionSpec },
): Options {
  const names = nameTable(context.topology.instances);
  const resolved: Options = { ...options };
  for (const [key, value] of Object.entries(options)) {
    const def = context.spec[key];
    if (!def?.ref || value === undefined) continue;
    const result = resolveValue(def, value, names);
    if (typeof result === "string") {
      throw new UsageError(`--${toKebab(key)}: ${result} (in ${context.topology.file})`);
    }
    resolved[key] = result.value;
  }
  return resolved;
}
