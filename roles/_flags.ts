/**
 * Flags several roles share, and the wiring from them to the library: the
 * wire settings of the common options ({@link connSettings}); discovery's
 * flags to a {@link Registrar} (a server's `--service --binders
 * --advertise --ttl`) or a service connection (a client's `--service
 * --binders --wait`), so a role needs only a line or two to use them.
 */
import {
  type Address,
  type COMMON_OPTIONS,
  defineOptions,
  type LISTENER_OPTIONS,
  type Options,
  type OptionsOf,
  type OptionSpec,
  parseAddress,
  type RoleOptions,
  toKebab,
  undialableHost,
  UsageError,
} from "../config/mod.ts";
import { codecByName, type ConnSettings } from "../wire/mod.ts";
import { connect, type Connection, type ConnectOptions } from "../clients/connection.ts";
import {
  BinderClient,
  DEFAULT_TTL_MS,
  Registrar,
  Resolver,
  ServiceCaller,
} from "../clients/discovery/mod.ts";
import { SERVICE_NAME } from "../clients/contracts/mod.ts";
import { authenticatorOf, credentialsOf } from "../auth/options.ts";
import { readTlsFiles } from "../cert/mod.ts";

export { DEFAULT_TTL_MS, SERVICE_NAME };

/** One authenticator per process's options: its listeners share the record of failures. */
const gates = new WeakMap<object, ConnSettings["authenticator"]>();

/**
 * The wire settings every role takes from the common options (`--heartbeat`,
 * `--liveness`, `--max-frame`, `--write-timeout`), for `listen` and `dial`;
 * with the credentials its dialers send (`--token`, or `--user` and
 * `--password`) and the authenticator its listeners use (`--token`, `--users`),
 * and the `--tls-*` files (read and checked once).
 * @throws {UsageError} for a user without a password, a bad users file, or
 * TLS files that cannot be used
 */
export function connSettings(o: CommonOptions): ConnSettings {
  if (!gates.has(o)) gates.set(o, authenticatorOf(o));
  return {
    maxFrame: o.maxFrame,
    heartbeatMs: o.heartbeat,
    liveness: o.liveness,
    writeTimeoutMs: o.writeTimeout,
    credentials: credentialsOf(o),
    authenticator: gates.get(o),
    tls: readTlsFiles(o),
  };
}

/** The options every role has. */
export type CommonOptions = OptionsOf<typeof COMMON_OPTIONS>;

/** Where binders are looked for when `--binders` is not given. */
export const DEFAULT_BINDERS = ["127.0.0.1:7000"];
/** How long a client waits for an instance when `--wait` is not given (ms). */
export const DEFAULT_WAIT_MS = 10_000;

// Defaults are applied in code, not in the specs, so that a flag given without
// --service (and so ignored) can be refused.
const BINDERS = { type: "addresses", ref: true, metavar: "HOST:PORT,..." } as const;

/** Flags of a role that registers itself with binders (the server). */
export const REGISTER_OPTIONS = defineOptions({
  service: {
    type: "string",
    description: "Register with binders under this service name",
    metavar: "NAME",
  },
  binders: {
    ...BINDERS,
    description: `With --service: binders to register with (default ${DEFAULT_BINDERS})`,
  },
  advertise: {
    type: "address",
    description: "With --service: address clients should dial, if not the listening one",
    metavar: "HOST:PORT",
  },
  ttl: {
    type: "duration",
    description: "With --service: lease with the binders, renewed every third of it (default 3s)",
  },
});

/** Flags of a role that resolves a service through binders (the client). */
export const RESOLVE_OPTIONS = defineOptions({
  service: {
    type: "string",
    description: "Call an instance of this service, found through binders (instead of --connect)",
    metavar: "NAME",
  },
  binders: {
    ...BINDERS,
    description: `With --service: binders to ask (default ${DEFAULT_BINDERS})`,
  },
  wait: {
    type: "duration",
    description: "With --service: how long to wait for an instance to appear (default 10s)",
  },
});

/** A role's options that name binders (`--binders`), with the common ones. */
type WithBinders = CommonOptions & { readonly binders?: string[] };

/**
 * Refuses flags of `spec` other than --service given without --service
 * (they would be ignored). @throws {UsageError}
 */
function checkWithoutService(options: { readonly service?: string }, spec: OptionSpec): void {
  if (options.service !== undefined) return;
  // The spec's keys are keys of the options it typed.
  const given = Object.keys(spec).filter((k) =>
    k !== "service" && (options as Options)[k] !== undefined
  );
  if (given.length > 0) {
    const flags = given.map((k) => `--${toKebab(k)}`).join(", ");
    throw new UsageError(
      `${flags} ${given.length === 1 ? "applies" : "apply"} only with --service NAME`,
    );
  }
}

/** `--service`, checked. @throws {UsageError} */
export function serviceName(value: unknown): string {
  if (typeof value !== "string" || !SERVICE_NAME.test(value)) {
    throw new UsageError(
      `--service: ${JSON.stringify(value)} is not a service name ` +
        `(letters, digits, ".", "_", "-"; up to 128)`,
    );
  }
  return value;
}

/** A client of the binders in `--binders`, with this process's connection settings. */
export function bindersFrom(
  options: WithBinders,
  self: { role: string; name: string },
): BinderClient {
  return new BinderClient({
    binders: options.binders ?? DEFAULT_BINDERS,
    role: self.role,
    name: self.name,
    codec: codecByName(options.codec),
    conn: connSettings(options),
  });
}

const WILDCARDS = new Set(["0.0.0.0", "::", "[::]", ""]);

/** A registration checked from the flags, started once the role listens. */
export interface PendingRegistration {
  /** Starts registering `bound` (or `--advertise`) under `--service`. */
  start(bound: { hostname: string; port: number }, name: string): Registrar;
}

/**
 * The registration a listening role's flags ask for, checked before it
 * listens; undefined without `--service`.
 * @throws {UsageError} for a bad service name, or a wildcard `--host`
 *   without `--advertise` (clients could not dial the address registered)
 */
export function registrationFor(
  options: RoleOptions<typeof REGISTER_OPTIONS & typeof LISTENER_OPTIONS>,
): PendingRegistration | undefined {
  checkWithoutService(options, REGISTER_OPTIONS);
  if (options.service === undefined) return undefined;
  const service = serviceName(options.service);
  const advertise: Address | undefined = options.advertise === undefined
    ? undefined
    : parseAddress(options.advertise);
  const undialable = advertise === undefined ? undefined : undialableHost(advertise.host);
  if (undialable !== undefined) {
    throw new UsageError(
      `--advertise ${options.advertise}: ${advertise!.host} is ${undialable}, which no client ` +
        `could dial: give the address clients should dial`,
    );
  }
  if (advertise === undefined && WILDCARDS.has(options.host)) {
    throw new UsageError(
      `--host ${options.host} listens on every interface: give --advertise HOST:PORT, ` +
        `the address clients should dial`,
    );
  }
  return {
    start(bound, name) {
      const registrar = new Registrar(bindersFrom(options, { role: "server", name }), {
        service,
        host: advertise?.host ?? bound.hostname,
        // `--advertise host:0` means the port this role listens on.
        port: advertise?.port || bound.port,
        ttl_ms: options.ttl ?? DEFAULT_TTL_MS,
      });
      return registrar.start();
    },
  };
}

/**
 * How a role that sends requests opens a connection to an instance of
 * `--service`, found through `--binders` (each lookup waiting up to `--wait`
 * for one): `connect({ binders, service })`, which moves to another instance
 * when one fails; undefined without `--service`.
 * @param connection how the role's connections connect (codec, timeouts, TLS…)
 * @param dial opens a connection to one instance, as the role dials servers (`rotate`)
 * @param how `signal` ends a wait for an instance; `rotate` asks the binders
 *   before each request (see {@link ServiceCaller})
 * @throws {UsageError} for a bad service name, or `--binders`/`--wait` without `--service`
 */
export function serviceConnector(
  options: RoleOptions<typeof RESOLVE_OPTIONS>,
  connection: ConnectOptions,
  dial: (address: Address) => Promise<Connection>,
  how: { signal?: AbortSignal; rotate?: boolean } = {},
): (() => Promise<Connection | ServiceCaller>) | undefined {
  const { signal, rotate } = how;
  checkWithoutService(options, RESOLVE_OPTIONS);
  if (options.service === undefined) return undefined;
  const service = serviceName(options.service);
  const name = options.name ?? `client-${Deno.pid}`;
  const wait = options.wait ?? DEFAULT_WAIT_MS;
  return async () => {
    const target = {
      binders: options.binders ?? DEFAULT_BINDERS,
      service,
      wait,
      waitSignal: signal,
    };
    const conn = await connect(target, { ...connection, redial: true });
    if (!rotate) return conn;
    const binders = bindersFrom(options, { role: "client", name });
    return new ServiceCaller(new Resolver(binders, service, { waitMs: 0 }), {
      dial,
      service: conn,
    });
  };
}
