/**
 * The flags of the balancer's L4 mode (`--mode tcp`) and the checks that
 * keep each mode to its own flags: a flag that one mode would ignore is a
 * mistake said at once (`dist: …`, exit 2), not a setting silently lost.
 */
import {
  defineOptions,
  type Options,
  type OptionSpec,
  type RoleInfo,
  toKebab,
  UsageError,
} from "../../../config/mod.ts";

/** Flags only the L4 mode reads (spread into the balancer's option spec). */
export const TCP_MODE_OPTIONS = defineOptions({
  mode: {
    type: "choice",
    description: "rpc: dist requests, spread one by one; " +
      "tcp: connections of any TCP service, bytes passed as they are",
    choices: ["rpc", "tcp"],
    default: "rpc",
  },
  idleTimeout: {
    type: "duration",
    description:
      "With --mode tcp: close a connection after this long with no byte either way (0: never)",
    default: 600_000,
  },
});

/**
 * What the topology, `dist up`, `dist status` and the exports must know of
 * a balancer in `--mode tcp` (spread into the balancer's role): it binds no
 * worker port, and its port passes every byte to a backend, so it answers
 * no `sys.ping` of its own and takes no TLS files or credentials.
 */
export const TCP_MODE_ROLE: Pick<RoleInfo, "unusedPorts" | "speaksDist"> = {
  unusedPorts: (o: Options) => o.mode === "tcp" ? ["workerPort"] : [],
  speaksDist: (o: Options) => o.mode !== "tcp",
};

/** Balancer flags that mean the same in both modes. */
const SHARED = new Set([
  "host",
  "port",
  "maxConnections",
  "maxConnectionsPerSource",
  "grace",
  "backends",
  "policy",
  "checkInterval",
  "rise",
  "fall",
  "mode",
]);

/** Flags only the L4 mode reads. */
const TCP_ONLY = new Set(["idleTimeout"]);

/**
 * A listener's security flags, which a byte-level proxy cannot honour: it
 * neither ends TLS nor reads a hello, so running with them would drop the
 * protection a user asked for. (A dialer's — `--token`, `--tls-ca` — are
 * left alone: a client's hello and TLS handshake pass through untouched to
 * the backends, which check them; `dist up` gives them to every instance.)
 */
const SECURITY = ["users", "tlsCert", "tlsKey", "tlsClientCa"];

/** Whether `key` was given: its value is not the spec's default (or, without one, is set). */
function given(options: Record<string, unknown>, spec: OptionSpec, key: string): boolean {
  const value = options[key];
  if (value === undefined) return false;
  const def = spec[key]?.default;
  return JSON.stringify(value) !== JSON.stringify(def);
}

/**
 * The flags of a `--mode tcp` balancer, checked.
 * @param spec the balancer's own option spec (its RPC-only flags are refused)
 * @throws {UsageError} for no `--backends`, a flag only RPC mode reads, a security flag
 */
export function checkTcpFlags(options: Record<string, unknown>, spec: OptionSpec): void {
  const backends = options.backends as string[] | undefined;
  if (backends === undefined || backends.length === 0) {
    throw new UsageError(
      "--mode tcp needs --backends HOST:PORT,...: the servers to pass connections to " +
        "(a TCP balancer finds no workers or services)",
    );
  }
  for (const key of Object.keys(spec)) {
    if (SHARED.has(key) || TCP_ONLY.has(key) || !given(options, spec, key)) continue;
    throw new UsageError(
      `--${toKebab(key)} applies only with --mode rpc: a TCP balancer passes connections ` +
        "as they are (its flags: --backends, --policy, --check-interval, --rise, --fall, " +
        "--idle-timeout, --max-connections, --max-connections-per-source, --grace)",
    );
  }
  for (const key of SECURITY) {
    if (options[key] === undefined) continue;
    throw new UsageError(
      `--${toKebab(key)} applies only with --mode rpc: a TCP balancer passes bytes as they ` +
        "are, TLS and hellos included, to the backends, which check them",
    );
  }
}

/**
 * The flags of an RPC balancer, checked for those only `--mode tcp` reads.
 * @throws {UsageError} naming the flag
 */
export function checkRpcFlags(options: Record<string, unknown>, spec: OptionSpec): void {
  for (const key of TCP_ONLY) {
    if (!given(options, spec, key)) continue;
    throw new UsageError(`--${toKebab(key)} applies only with --mode tcp`);
  }
}
