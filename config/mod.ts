/**
 * @module
 * Configuration: what every role can be told and how.
 *
 * - `spec.ts`: the option-spec types and {@link COMMON_OPTIONS}; each role
 *   exports an {@link OptionSpec}, and everything else is generated from it.
 * - `values.ts`: durations, addresses, converting one value per option type,
 *   built-in defaults and the merging of layers (later layers win).
 * - `argv.ts`: `dist <role> [flags]` into a {@link ParsedCommand}, and with
 *   `--config FILE --name X` the instance's role and options
 *   ({@link parseCommand}).
 * - `help.ts`: `dist --help` and `dist <role> --help`.
 * - `topology.ts`: the TOML topology file, validated in one pass and expanded
 *   into instances; `default_topology.ts` is the embedded default.
 * - `errors.ts`: {@link UsageError}, a user's mistake (exit 2).
 * - `hosts.ts`: one spelling per address ({@link canonicalHost}), for keys.
 *
 * Precedence for one instance: built-in defaults < `[defaults]` < the
 * file's entry < command-line flags, i.e.
 * `mergeOptions(roleSpec(info), instance.options, parsed.options)` (what
 * {@link parseCommand} returns as `resolved`).
 */
export * from "./spec.ts";
export { UsageError } from "./errors.ts";
export { checkSecretFile, ownerProblem, type OwnerRule } from "./owner.ts";
export {
  CA_RULE,
  type FileRule,
  KEY_RULE,
  PEM_RULE,
  prefetchUserFiles,
  readUserFile,
  readUserFileSync,
  SECRET_RULE,
  TOPOLOGY_RULE,
  userFilesOf,
  USERS_RULE,
} from "./user_files.ts";
export {
  type Address,
  type ConvertOptions,
  convertValue,
  defaultsOf,
  formatAddress,
  formatDuration,
  isReferenceName,
  mergeOptions,
  parseAddress,
  parseDuration,
  portKeysOf,
  roleSpec,
  speaksDist,
  toCamel,
  toKebab,
  toSnake,
} from "./values.ts";
export { didYouMean, suggest } from "./_suggest.ts";
export { keyText, quoted } from "./_quote.ts";
export { canonicalHost, undialableHost } from "./hosts.ts";
export { LineLocator } from "./_locate.ts";
export { dialHost } from "./_resolve.ts";
export { hostsClash, LISTEN_ADDRESSES, listenHost, listensAt } from "./_listen.ts";
export {
  type Command,
  optionsToArgv,
  parseArgv,
  parseCommand,
  type ParseCommandOptions,
  type ParsedCommand,
} from "./argv.ts";
export { formatMainHelp, formatRoleHelp } from "./help.ts";
export {
  DEFAULT_MAX_INSTANCES,
  findInstance,
  type Instance,
  loadTopology,
  parseTopology,
  type ParseTopologyOptions,
  resolveReferences,
  type RestartPolicy,
  throwProblems,
  type Topology,
  type TopologyProblem,
  type TopologyTls,
} from "./topology.ts";
export { DEFAULT_TOPOLOGY, DEFAULT_TOPOLOGY_FILE } from "./default_topology.ts";
