/**
 * Option specifications: the one place that says which options a role takes,
 * their types and defaults. The argv parser, the topology loader and the help
 * text are all generated from these tables.
 */

/** How a raw value (a CLI string or a TOML value) is checked and converted. */
export type OptionType =
  | "string" // any text
  | "integer" // whole number, optional min/max
  | "number" // finite number, optional min/max
  | "boolean" // flag; on the CLI `--x` alone means true, `--no-x` means false
  | "duration" // "500ms", "2s", "1m", "1h" or a bare number of ms -> number (ms)
  | "port" // integer 0..65535
  | "address" // "host:port" (or a topology instance name when `ref` is set) -> "host:port"
  | "addresses" // comma list (CLI) or array (TOML) of addresses/names -> string[]
  | "list" // comma list (CLI) or array (TOML) of strings -> string[]
  | "choice"; // one of `choices`

export interface OptionDef {
  type: OptionType;
  /** One line for `--help`. */
  description: string;
  /** Built-in default, already converted (duration in ms, address as "host:port"). */
  default?: unknown;
  /** One-letter alias on the CLI, e.g. "p" for `-p`. */
  short?: string;
  /** For `string`: a host to listen on (an IP address or a name, no port). */
  host?: boolean;
  /** For `choice`. */
  choices?: readonly string[];
  min?: number;
  max?: number;
  /**
   * For `address`/`addresses`: the value may name topology instances, which
   * resolve to their "host:port" (a replicated name means all its replicas).
   */
  ref?: boolean;
  /**
   * For `ref` options: which option of the named instance gives the port a
   * reference resolves to (default "port"), e.g. "workerPort" for a worker's
   * balancer address.
   */
  refPort?: string;
  /** Placeholder in help text, e.g. "HOST:PORT". */
  metavar?: string;
  /**
   * A secret (a token, a password): never written on a command line that
   * others can read in `ps`; `dist up` hands it to an instance in the
   * environment variable `env` instead.
   */
  secret?: boolean;
  /** The environment variable read when the option is not given (`DIST_TOKEN`). */
  env?: string;
  /**
   * A file or folder: in a topology file a relative one is taken from the
   * file's folder (config/_paths.ts). `read`: read when the instance starts
   * (a users file, a certificate; `dist export` reads them too); `write`:
   * where the instance writes (a data folder, a log file).
   */
  path?: "read" | "write";
  /** Values of a `path` option that are words, not paths (`data_dir = "auto"`). */
  keep?: readonly string[];
}

/** Keys are camelCase; the CLI flag is kebab-case, the topology key snake_case. */
export type OptionSpec = Readonly<Record<string, OptionDef>>;

/** Converted option values keyed by camelCase name, as the loader makes them (untyped). */
export type Options = Record<string, unknown>;

/** The value an option of definition D has once converted. */
export type ValueOf<D extends OptionDef> = D["type"] extends
  "integer" | "number" | "duration" | "port" ? number
  : D["type"] extends "boolean" ? boolean
  : D["type"] extends "addresses" | "list" ? string[]
  : D["type"] extends "choice" ? (D["choices"] extends readonly (infer C)[] ? C : string)
  : string;

/**
 * The options of spec S, typed: one with a default is always there, one
 * without may be undefined; all read-only (a role does not change them).
 * A misspelt or renamed option is then a compile error where it is read.
 */
export type OptionsOf<S extends OptionSpec> =
  & { readonly [K in keyof S as S[K] extends { default: unknown } ? K : never]: ValueOf<S[K]> }
  & { readonly [K in keyof S as S[K] extends { default: unknown } ? never : K]?: ValueOf<S[K]> };

/**
 * Keeps a spec's literal types (its keys, each option's type and choices)
 * for {@link OptionsOf}; an `: OptionSpec` annotation would erase them.
 */
export function defineOptions<const S extends OptionSpec>(spec: S): S {
  return spec;
}

/** A role as the command line and the topology loader see it. */
export interface RoleInfo {
  /** One line for `dist --help`. */
  summary: string;
  /** Usage lines shown by `dist <role> --help`, after "Usage:". */
  usage: string[];
  options: OptionSpec;
  /** Whether the role takes positional arguments (the client's operation). */
  positionals?: boolean;
  /**
   * What to say about a flag the role does not take but a user may try,
   * keyed by the flag as typed: `{"--port": "the client dials: give --connect HOST:PORT"}`.
   */
  flagHints?: Record<string, string>;
  /**
   * What `dist up` does by default when an instance of this role exits
   * (default "on-failure"); "no" for roles that end on their own, such as a
   * client sending a batch.
   */
  restart?: "always" | "on-failure" | "no";
  /**
   * Port options an instance with these options does not listen on (a
   * balancer in `--mode tcp` has no worker port): no clash is reported for
   * them and nothing checks or publishes them.
   */
  unusedPorts?(options: Options): readonly string[];
  /**
   * Whether an instance with these options speaks dist on its port (default
   * true). One that does not (a balancer in `--mode tcp` passes every byte
   * to a backend) is not asked for `sys.ping` or `sys.stats`, and is given
   * no TLS files or credentials, by `dist up`, `dist status` and the exports.
   */
  speaksDist?(options: Options): boolean;
}

/**
 * `--host`: the address a role listens on. Only roles that listen take it as
 * a flag (put `host: HOST_OPTION` in their options); in a topology file every
 * entry may say `host`, which also places the instance on a machine
 * (`Instance.host` of the topology, for `dist up --on HOST`).
 */
export const HOST_OPTION = {
  type: "string",
  host: true,
  description: "Address to listen on",
  default: "127.0.0.1",
  metavar: "HOST",
} as const satisfies OptionDef;

// ---- Authentication (issue 15, stream i15-auth): credentials and the users file ----

/**
 * How an instance proves who it is when it dials, and what it requires of
 * dialers when it listens (auth/options.ts reads them). Part of every role's
 * options (in {@link COMMON_OPTIONS}).
 */
export const AUTH_OPTIONS = defineOptions({
  token: {
    type: "string",
    description: "Shared secret: sent when dialing, and required of every dialer when listening",
    metavar: "TOKEN",
    secret: true,
    env: "DIST_TOKEN",
  },
  tokenFile: {
    type: "string",
    path: "read",
    description:
      "Read --token from this file (a mounted secret: Kubernetes, compose, systemd credentials)",
    metavar: "FILE",
  },
  user: {
    type: "string",
    description:
      "User name sent when dialing (with --password), as the other side's users file has it",
    metavar: "NAME",
    env: "DIST_USER",
  },
  password: {
    type: "string",
    description: "Password of --user, sent when dialing",
    metavar: "PASSWORD",
    secret: true,
    env: "DIST_PASSWORD",
  },
  passwordFile: {
    type: "string",
    path: "read",
    description: "Read --password from this file (a mounted secret)",
    metavar: "FILE",
  },
  users: {
    type: "string",
    path: "read",
    description:
      "Users file (dist passwd writes it): dialers must prove they are one of its users, who may do only what it grants",
    metavar: "FILE",
  },
});

// ---- end of authentication options ----

/**
 * What every listening role takes besides its port: `--host`,
 * `--max-connections`, `--max-connections-per-source`, `--grace`. Spread into a role's options.
 */
export const LISTENER_OPTIONS = defineOptions({
  host: HOST_OPTION,
  maxConnections: {
    type: "integer",
    description: "Most concurrent connections; more are refused with OVERLOADED",
    default: 10_000,
    min: 1,
  },
  maxConnectionsPerSource: {
    type: "integer",
    description: "Most connections of one source (its own user, else its address; IPv6 by /64) " +
      "on the dist port (and the broker's MQTT ports); 0: no bound but, while --max-connections " +
      "is reached, a quarter of it",
    default: 0,
    min: 0,
  },
  grace: {
    type: "duration",
    description: "On shutdown, how long requests in flight may take to finish",
    default: 2000,
  },
});

// ---- Security: TLS (issue 15, transport half) ------------------------------
/**
 * TLS files every role takes (read and checked at start by cert/files.ts).
 * A listener with `--tls-cert` and `--tls-key` speaks TLS only; a dialer
 * with `--tls-ca` dials in TLS only, verifying the listener's certificate
 * against that CA alone and the host name it dialed. `dist up` sets them
 * for every instance from the topology's `[security]` table.
 */
export const TLS_OPTIONS = defineOptions({
  tlsCert: {
    type: "string",
    path: "read",
    description: "TLS certificate (PEM): a listener speaks TLS with it; " +
      "a dialer shows it to listeners that require one",
    metavar: "FILE",
  },
  tlsKey: {
    type: "string",
    path: "read",
    description: "Private key of --tls-cert (PEM)",
    metavar: "FILE",
  },
  tlsCa: {
    type: "string",
    path: "read",
    description: "Dial in TLS, trusting only listeners whose certificate this CA signed (PEM)",
    metavar: "FILE",
  },
  tlsClientCa: {
    type: "string",
    path: "read",
    description: "Listen in mutual TLS: require a client certificate this CA signed (PEM)",
    metavar: "FILE",
  },
});
// ---- end of Security: TLS ---------------------------------------------------

/** Options every role takes. */
export const COMMON_OPTIONS = defineOptions({
  name: { type: "string", description: "Instance name used in logs and replies", metavar: "NAME" },
  logLevel: {
    type: "choice",
    description: "Log level",
    choices: ["trace", "debug", "info", "warning", "error", "fatal"],
    default: "info",
  },
  logFile: {
    type: "string",
    path: "write",
    description: "Also write logs to this file",
    metavar: "FILE",
  },
  json: {
    type: "boolean",
    description: "For programs: results and log lines as JSON objects, one per line",
    default: false,
  },
  codec: {
    type: "choice",
    description: "Wire codec for connections this instance dials",
    choices: ["json", "msgpack"],
    default: "json",
  },
  heartbeat: {
    type: "duration",
    description: "Send a ping after this much silence",
    default: 1000,
    // A listener's heartbeat is every client's (the shorter wins): `--heartbeat 1` (a bare
    // number is ms) gave them 30 ms to live, and a GC pause dropped them (h48 P15).
    min: 100,
  },
  liveness: {
    type: "integer",
    description: "Heartbeats missed before a peer is declared dead",
    default: 3,
    min: 1,
  },
  writeTimeout: {
    type: "duration",
    description: "Cut off a peer that takes none of our output for this long",
    default: 10_000,
  },
  maxFrame: {
    type: "integer",
    description: "Largest accepted frame in bytes (up to 64 MiB)",
    default: 1024 * 1024,
    min: 64,
    max: 64 * 1024 * 1024,
    metavar: "BYTES",
  },
  metrics: {
    type: "address",
    description: "Serve Prometheus metrics at http://HOST:PORT/metrics (port 0: a free one)",
    metavar: "HOST:PORT",
  },
  ...AUTH_OPTIONS,
  ...TLS_OPTIONS,
});

/** A role's options: the common ones, overridden by its own spec S. */
export type RoleOptions<S extends OptionSpec> = OptionsOf<Omit<typeof COMMON_OPTIONS, keyof S> & S>;
