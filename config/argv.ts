/**
 * The command line: `dist <role> [flags] [args]` or `dist --role <role> …`,
 * with flags generated from the role's option spec.
 */
import { didYouMean } from "./_suggest.ts";
import { UsageError } from "./errors.ts";
import {
  COMMON_OPTIONS,
  type OptionDef,
  type Options,
  type OptionSpec,
  type RoleInfo,
} from "./spec.ts";
import { convertValue, mergeOptions, roleSpec, toCamel, toKebab } from "./values.ts";
import {
  findInstance,
  type Instance,
  loadTopology,
  resolveReferences,
  type Topology,
} from "./topology.ts";

/** What the command line asked for. */
export interface ParsedCommand {
  /** The role, from the first positional or `--role`; undefined when none was given. */
  role?: string;
  /** `--help` / `-h` was given. */
  help: boolean;
  /** `--version` / `-V` was given. */
  version: boolean;
  /** `--config FILE`: a topology file to take this instance's options from. */
  config?: string;
  /** Only the flags actually given, converted, keyed by camelCase name. */
  options: Options;
  /** Arguments after the role (only for roles with `positionals: true`). */
  positionals: string[];
}

/** Flags every command takes, whatever the role. */
const GLOBAL_FLAGS = ["help", "version", "config", "role"] as const;
const GLOBAL_SHORT: Record<string, "help" | "version"> = { h: "help", V: "version" };

/** A token that is a negative number rather than a flag: `-4`, `-2.5`, `-1e3`. */
const NEGATIVE = /^-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/;

/**
 * After a role's first positional (an operation), a token that starts as a
 * number or an expression does (`-1+2`, `-1,2`, `-(3)`) is an argument, as a
 * bare negative number is: no flag starts so (h48 P11).
 */
const NEGATIVE_ARGUMENT = /^-[\d.(]/;

function isFlag(token: string): boolean {
  return token.startsWith("-") && token !== "-";
}

/** Whether `token` may be taken as the value of the flag before it. */
function isValue(token: string | undefined): token is string {
  return token !== undefined && (!isFlag(token) || NEGATIVE.test(token));
}

/** Takes every `--role X` / `--role=X` out of `tokens` (before `--`) and returns X. */
function takeRoleFlag(tokens: string[]): string | undefined {
  let role: string | undefined;
  for (let i = 0; i < tokens.length && tokens[i] !== "--";) {
    const token = tokens[i];
    if (token !== "--role" && !token.startsWith("--role=")) {
      i++;
      continue;
    }
    let value: string | undefined;
    if (token === "--role") {
      value = isValue(tokens[i + 1]) ? tokens[i + 1] : undefined;
      tokens.splice(i, value === undefined ? 1 : 2);
    } else {
      value = token.slice("--role=".length);
      tokens.splice(i, 1);
    }
    if (!value) throw new UsageError("--role needs a value");
    if (role !== undefined && role !== value) {
      throw new UsageError(`--role given twice: ${role} and ${value}`);
    }
    role = value;
  }
  return role;
}

/** Whether `token` is a flag every command takes (global or common), and whether it takes a value. */
function knownBeforeRole(token: string): { value: boolean } | undefined {
  if (token.length === 2 && GLOBAL_SHORT[token[1]] !== undefined) return { value: false };
  if (!token.startsWith("--")) return undefined;
  const eq = token.indexOf("=");
  const name = token.slice(2, eq < 0 ? undefined : eq);
  if (name === "help" || name === "version") return { value: false };
  if (name === "config" || name === "role") return { value: eq < 0 };
  const def = (COMMON_OPTIONS as OptionSpec)[toCamel(name)];
  if (def === undefined || toKebab(toCamel(name)) !== name) return undefined;
  return { value: eq < 0 && def.type !== "boolean" };
}

/**
 * Finds where the role is named positionally: the first argument that is
 * neither a flag every command takes nor such a flag's value. So in
 * `dist --name client server` the role is "server", never the value of
 * `--name`. The search stops at a flag only a role knows (its arity is not
 * known yet) and at `--`.
 *
 * @returns the index in `tokens`, or -1
 */
function rolePosition(tokens: string[]): number {
  for (let i = 0; i < tokens.length; i++) {
    const token = tokens[i];
    if (token === "--") return -1;
    if (!isFlag(token)) return i;
    const known = knownBeforeRole(token);
    if (known === undefined) return -1;
    if (known.value && isValue(tokens[i + 1])) i++;
  }
  return -1;
}

/**
 * The value of the last `--flag X` / `--flag=X` before `--` (a value is never
 * a flag, so this cannot be fooled by another flag's value).
 */
function flagValue(tokens: readonly string[], flag: string): string | undefined {
  let value: string | undefined;
  for (let i = 0; i < tokens.length && tokens[i] !== "--"; i++) {
    if (tokens[i] === flag && isValue(tokens[i + 1])) value = tokens[i + 1];
    else if (tokens[i].startsWith(`${flag}=`)) value = tokens[i].slice(flag.length + 1);
  }
  return value;
}

/**
 * Takes the role out of `tokens`: `--role X`, or the first positional.
 * With `fallback` (the role of a topology instance), a first positional that
 * is not a role is left alone (it is the client's operation).
 */
function takeRole(
  tokens: string[],
  roles: Record<string, RoleInfo>,
  fallback: string | undefined,
): string | undefined {
  const flag = takeRoleFlag(tokens);
  const at = rolePosition(tokens);
  const positional = at < 0 ? undefined : tokens[at];
  if (flag !== undefined) {
    if (positional !== undefined && Object.hasOwn(roles, positional)) {
      if (positional !== flag) {
        throw new UsageError(`Two roles given: ${positional} and --role ${flag}: give one`);
      }
      tokens.splice(at, 1);
    }
    return flag;
  }
  if (positional === undefined) return fallback;
  if (fallback !== undefined && !Object.hasOwn(roles, positional)) return fallback;
  tokens.splice(at, 1);
  return positional;
}

/**
 * Parses the arguments after `dist`.
 *
 * Flags are the kebab-case form of the option keys (`workerPort` ->
 * `--worker-port`), as `--flag value` or `--flag=value`, plus short aliases
 * (`-p 5557`); booleans are `--json`, `--no-json` or `--json=false`. `--help`,
 * `--version`, `--config FILE` and `--role ROLE` are global. `--` ends flags.
 * For a role that takes positionals, a negative number after the first
 * positional is a positional (`dist client add 3 -4`).
 *
 * When `--help` is given, mistakes in the other flags are ignored so that the
 * help can be shown; an unknown role is still an error.
 *
 * @param options.role the role when argv names none (a topology instance's)
 * @throws {UsageError} for an unknown role or flag, a missing or bad value,
 *   or an unexpected positional
 */
export function parseArgv(
  argv: string[],
  roles: Record<string, RoleInfo>,
  options: { role?: string } = {},
): ParsedCommand {
  const tokens = [...argv];
  const role = takeRole(tokens, roles, options.role);
  if (role !== undefined && !Object.hasOwn(roles, role)) {
    const hint = didYouMean(role, Object.keys(roles)) || " (see dist --help)";
    throw new UsageError(`Unknown role ${JSON.stringify(role)}${hint}`);
  }
  const beforeEnd = tokens.includes("--") ? tokens.slice(0, tokens.indexOf("--")) : tokens;
  const wantsHelp = beforeEnd.some((t) => t === "-h" || t === "--help");
  const command: ParsedCommand = {
    role,
    help: false,
    version: false,
    options: {},
    positionals: [],
  };
  try {
    new ArgvParser(role, role === undefined ? undefined : roles[role], {
      // A topology file can resolve instance names given on the command line.
      names: beforeEnd.some((t) => t === "--config" || t.startsWith("--config=")),
    }).parse(tokens, command);
  } catch (error) {
    if (!(wantsHelp && error instanceof UsageError)) throw error;
    command.help = true;
  }
  return command;
}

/** Parses the tokens left after the role is known. */
class ArgvParser {
  #role?: string;
  #info?: RoleInfo;
  #spec: OptionSpec;
  #longs = new Map<string, string>();
  #shorts = new Map<string, string>();
  #names: boolean;
  /** Whether a positional came before the token being parsed (an unknown flag's hint). */
  #afterPositional = false;

  constructor(role: string | undefined, info: RoleInfo | undefined, options: { names: boolean }) {
    this.#role = role;
    this.#info = info;
    this.#spec = info ? roleSpec(info) : {};
    this.#names = options.names;
    for (const [key, def] of Object.entries(this.#spec)) {
      this.#longs.set(toKebab(key), key);
      if (def.short) this.#shorts.set(def.short, key);
    }
  }

  parse(tokens: string[], command: ParsedCommand): void {
    let flagsEnded = false;
    for (let i = 0; i < tokens.length; i++) {
      const token = tokens[i];
      this.#afterPositional = command.positionals.length > 0;
      const negative = this.#info?.positionals && this.#afterPositional &&
        NEGATIVE_ARGUMENT.test(token);
      if (flagsEnded || !isFlag(token) || negative) {
        this.#positional(token, command);
      } else if (token === "--") {
        flagsEnded = true;
      } else {
        const next = tokens[i + 1];
        if (this.#flag(token, next, command)) i++;
      }
    }
  }

  #positional(token: string, command: ParsedCommand): void {
    if (this.#role === undefined || !this.#info?.positionals) {
      const who = this.#role === undefined ? "dist" : this.#role;
      throw new UsageError(`Unexpected argument ${JSON.stringify(token)}: ${who} takes none`);
    }
    command.positionals.push(token);
  }

  /** Handles one flag; returns true when it consumed `next` as its value. */
  #flag(token: string, next: string | undefined, command: ParsedCommand): boolean {
    let name: string;
    let inline: string | undefined;
    let key: string | undefined;
    if (token.startsWith("--")) {
      const eq = token.indexOf("=");
      name = eq < 0 ? token.slice(2) : token.slice(2, eq);
      inline = eq < 0 ? undefined : token.slice(eq + 1);
      if (name === "help" || name === "version") {
        command[name] = inline === undefined ||
          convertValue(`--${name}`, { type: "boolean", description: "" }, inline) as boolean;
        return false;
      }
      if (name === "config") {
        command.config = this.#value("--config", inline, next);
        return inline === undefined;
      }
      key = this.#longs.get(name);
      const negated = name.startsWith("no-") ? this.#longs.get(name.slice(3)) : undefined;
      if (key === undefined && negated !== undefined && this.#spec[negated].type === "boolean") {
        if (inline !== undefined) throw new UsageError(`--${name} takes no value`);
        command.options[negated] = false;
        return false;
      }
    } else {
      name = token[1];
      const rest = token.slice(2);
      if (GLOBAL_SHORT[name] !== undefined && rest === "") {
        command[GLOBAL_SHORT[name]] = true;
        return false;
      }
      key = this.#shorts.get(name);
      if (key !== undefined && rest !== "") {
        if (this.#spec[key].type === "boolean") key = undefined; // no bundling: -jv
        else inline = rest.replace(/^=/, "");
      }
      if (key === undefined) name = token;
    }
    if (key === undefined) throw this.#unknown(token.startsWith("--") ? `--${name}` : name);
    const def = this.#spec[key];
    const label = `--${toKebab(key)}`;
    if (def.type === "boolean" && inline === undefined) {
      command.options[key] = true;
      return false;
    }
    const raw = this.#value(label, inline, next);
    this.#set(command.options, key, def, convertValue(label, def, raw, { names: this.#names }));
    return inline === undefined;
  }

  #value(label: string, inline: string | undefined, next: string | undefined): string {
    if (inline !== undefined) return inline;
    if (!isValue(next)) throw new UsageError(`${label} needs a value`);
    return next;
  }

  /** Sets an option; a list flag given twice collects both (`--backends a --backends b`). */
  #set(options: Options, key: string, def: OptionDef, value: unknown): void {
    const previous = options[key];
    const list = def.type === "list" || def.type === "addresses";
    options[key] = list && Array.isArray(previous) ? [...previous, ...(value as string[])] : value;
  }

  #unknown(flag: string): UsageError {
    const flags = [...GLOBAL_FLAGS, ...this.#longs.keys()];
    const hint = flag.startsWith("--")
      ? didYouMean(flag.slice(2), flags, { format: (f) => `--${f}` })
      : "";
    const advice = this.#info?.flagHints?.[flag.startsWith("--") ? flag : flag.slice(0, 2)];
    if (advice !== undefined) {
      return new UsageError(`Unknown flag ${flag} for ${this.#role}: ${advice}`);
    }
    if (this.#role === undefined) {
      return new UsageError(
        hint
          ? `Unknown flag ${flag}${hint}`
          : `Unknown flag ${flag}: give a role first, as in dist <role> ${flag}`,
      );
    }
    const dashes = this.#info?.positionals && this.#afterPositional && !hint
      ? " (after an operation, write -- before an argument that starts with -)"
      : "";
    return new UsageError(`Unknown flag ${flag} for ${this.#role}${hint}${dashes}`);
  }
}

/** What `dist …` asks for, with the options it runs with. */
export interface Command extends ParsedCommand {
  /**
   * Everything the role runs with: built-in defaults < the topology
   * instance's options (with `--config`) < the flags given.
   */
  resolved: Options;
  /** With `--config FILE --name X`: the file and instance X in it. */
  topology?: Topology;
  instance?: Instance;
}

/** How {@link parseCommand} reads a topology file (tests give their own). */
export interface ParseCommandOptions {
  load?: (file: string, roles: Record<string, RoleInfo>) => Promise<Topology>;
}

/**
 * Parses the arguments after `dist` and resolves the options the role runs
 * with. `--config FILE --name X` takes X's options from the topology file,
 * and X's role when argv names none (`dist --config cluster.toml --name
 * client`). The role is undefined only with `--help`, `--version` or no
 * arguments at all.
 *
 * @throws {UsageError} as {@link parseArgv} does; for a topology file that
 *   cannot be loaded; for `--config` without `--name` (naming the instances);
 *   for an unknown instance, or one of another role than the one given
 */
export async function parseCommand(
  argv: string[],
  roles: Record<string, RoleInfo>,
  options: ParseCommandOptions = {},
): Promise<Command> {
  const config = flagValue(argv, "--config");
  if (config === undefined) {
    const parsed = parseArgv(argv, roles);
    const resolved = parsed.role === undefined
      ? {}
      : mergeOptions(roleSpec(roles[parsed.role]), parsed.options);
    return { ...parsed, resolved };
  }
  const help = argv.slice(0, argv.includes("--") ? argv.indexOf("--") : undefined)
    .some((t) => t === "-h" || t === "--help");
  let topology: Topology;
  let instance: Instance;
  try {
    topology = await (options.load ?? loadTopology)(config, roles);
    const name = flagValue(argv, "--name");
    if (name === undefined) {
      const names = topology.instances.map((i) => i.name);
      const shown = names.length > 30 ? [...names.slice(0, 30), "…"] : names;
      throw new UsageError(`--config needs --name INSTANCE: one of ${shown.join(", ")}`);
    }
    instance = findInstance(topology, name);
  } catch (error) {
    // Help is shown whatever is wrong with the file.
    if (!help || !(error instanceof UsageError)) throw error;
    return { ...parseArgv(argv, roles), resolved: {} };
  }
  const parsed = parseArgv(argv, roles, { role: instance.role });
  if (parsed.role !== instance.role && !parsed.help) {
    throw new UsageError(
      `Instance ${instance.name} in ${config} is a ${instance.role}, not a ${parsed.role}`,
    );
  }
  if (parsed.help || parsed.version) return { ...parsed, resolved: {}, topology, instance };
  const spec = roleSpec(roles[instance.role]);
  const flags = resolveReferences(parsed.options, { topology, spec });
  const resolved = mergeOptions(spec, instance.options, flags);
  return { ...parsed, resolved, topology, instance };
}

/**
 * The command-line flags that reproduce `options` (the reverse of
 * {@link parseArgv}), e.g. for spawning an instance. Keys outside `spec` and
 * undefined values are left out; every flag is written `--flag=value` so
 * values starting with "-" survive.
 */
export function optionsToArgv(options: Options, spec: OptionSpec): string[] {
  const argv: string[] = [];
  for (const [key, value] of Object.entries(options)) {
    const def = spec[key];
    if (def === undefined || value === undefined) continue;
    const flag = `--${toKebab(key)}`;
    if (def.type === "boolean") argv.push(value ? flag : `--no-${toKebab(key)}`);
    else if (Array.isArray(value)) argv.push(`${flag}=${value.join(",")}`);
    else argv.push(`${flag}=${String(value)}`);
  }
  return argv;
}
