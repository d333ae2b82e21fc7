/**
 * @module
 * Discovery through binders: what a server uses to register and what a
 * client or a balancer uses to find the instances of a service. Talks to
 * binders only through wire/, with the binder contract.
 *
 * - `binders.ts`: {@link BinderClient}, calls to a list of binders, starting
 *   at a random one and failing over to the next;
 * - `registrar.ts`: {@link Registrar}, a registration kept alive by renewals
 *   (registering again when a binder forgot it), deregistered on stop;
 * - `resolver.ts`: {@link Resolver} (lookup, waiting for an instance;
 *   `report_down`) and {@link ServiceCaller}, requests to a service's
 *   instances in the binders' turn (`dist client --service --random`);
 * - `service.ts`: {@link ServiceSource}, what `connect({ binders, service })`
 *   dials: the next instance, one that refuses passed over and the next
 *   dialed at once, within the connect timeout;
 * - `memory.ts`: which instances could not be dialed a moment ago and which
 *   worked, shared by a connection and a ServiceCaller over it; reports of
 *   dead ones, a few at a time;
 * - `watch.ts`: {@link watchService}, a service's live instances pushed to a
 *   callback, moving to another binder when one goes away.
 */
import type { CodecName, ConnSettings, Credentials, TlsSettings } from "../../wire/mod.ts";
import { codecByName, DistError } from "../../wire/mod.ts";
import { binder, type Instance, type Registration } from "../contracts/mod.ts";
import { BinderClient } from "./binders.ts";
import { checkConnectOptions } from "../connect_options.ts";
import { Registrar } from "./registrar.ts";
import { Resolver } from "./resolver.ts";

export { BinderClient, type BinderClientOptions, type BinderNotification } from "./binders.ts";
export { DEFAULT_TTL_MS, Registrar, type RegistrarFailure } from "./registrar.ts";
export {
  Resolver,
  type ResolverOptions,
  ServiceCaller,
  type ServiceCallerOptions,
} from "./resolver.ts";
export { ServiceSource } from "./service.ts";
export { type ServiceWatch, watchService } from "./watch.ts";

/** How {@link binders} talks to binders. */
export interface BindersOptions {
  /** This program's name, told to the binders (default `client-PID`). */
  name?: string;
  /** The role told in the handshake (default `client`). */
  role?: string;
  /** The connections' codec (default `json`). */
  codec?: CodecName;
  /** Timeout of each call, and of connecting (ms, default 2 s). */
  timeout?: number;
  /**
   * What to prove who this program is with, where the other side asks
   * (`--token`/`--users` on it): a token, or a user and password.
   */
  credentials?: Credentials;
  /**
   * TLS (PEM text): `ca` dials the binders in TLS, trusting only those whose
   * certificate it signed; `cert` and `key` are shown to a binder that asks.
   */
  tls?: TlsSettings;
  /** Frame limit, heartbeat, liveness and write timeout of the connections. */
  wire?: ConnSettings;
}

/**
 * A client of the binders at `addresses` ("host:port"): one is picked at
 * random and kept while it answers; the next is tried when it does not.
 * @throws {DistError} BAD_REQUEST for an empty list, or an option out of its range
 */
export function binders(addresses: readonly string[], options: BindersOptions = {}): BinderClient {
  checkConnectOptions(options, "binders()");
  return new BinderClient({
    binders: addresses,
    role: options.role ?? "client",
    name: options.name ?? `client-${Deno.pid}`,
    codec: codecByName(options.codec ?? "json"),
    conn: {
      ...options.wire,
      credentials: options.credentials ?? options.wire?.credentials,
      tls: options.tls ?? options.wire?.tls,
    },
    timeoutMs: options.timeout,
  });
}

/**
 * Registers an instance and keeps it registered (renewing the lease every
 * third of `ttl_ms`, registering again when a binder forgot it) until
 * `stop()`, which deregisters it. A refusal that trying again will not
 * change ends it: see {@link Registrar.ended}.
 * @throws {DistError} BAD_REQUEST, at once, for a registration no binder
 *   takes (a service name, host, port, `ttl_ms` or `meta` out of bounds)
 */
export function register(through: BinderClient, registration: Registration): Registrar {
  try {
    binder.methods.register.params(registration);
  } catch (err) {
    throw new DistError("BAD_REQUEST", `register(): ${(err as Error).message}`);
  }
  return new Registrar(through, registration).start();
}

/**
 * The next instance of `service` (binders hand them out in turn), waiting
 * up to `wait` ms for one to appear.
 * @throws {DistError} NOT_FOUND when there is none in time
 */
export function resolve(
  through: BinderClient,
  service: string,
  options: { wait?: number; signal?: AbortSignal } = {},
): Promise<Instance> {
  return new Resolver(through, service, { waitMs: options.wait ?? 0, signal: options.signal })
    .resolve();
}
