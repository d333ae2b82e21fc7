/**
 * @module
 * The dist client library, for Deno programs (`import … from "@dist/dist/client"`):
 *
 * - {@link connect}: a connection to a server, a balancer or a broker that
 *   dials again when it drops; `request` (typed with a contract's method,
 *   or any method by name), `notify`, `on` (events), `drain`, `close`;
 * - on a broker connection, `publish`, `subscribe` (an async iterator of
 *   messages, with queue groups and slow-subscriber policies), `topics`;
 * - {@link serve}: a worker inside any program, serving the contracts it is
 *   given through a balancer's worker port;
 * - discovery through binders: {@link binders}, {@link register} (a lease
 *   kept renewed), {@link resolve}, {@link watchService};
 * - the contracts of every service (`sys`, `ops`, `binder`, `broker`,
 *   `balancer`, `worker`): each method's name, params and result, as the
 *   CLI's own roles serve and call them.
 *
 * - `method`, `event` and the parsers (`obj`, `str`, `int` …) to define a
 *   program's own contracts.
 *
 * Files: `connection.ts` (with `connect_options.ts`, `listeners.ts`, `resend.ts`),
 * `pubsub.ts` (with `subscription.ts`), `worker.ts`, `discovery/` and `contracts/`.
 */
export { connect, Connection, type ConnectOptions, type ServiceTarget } from "./connection.ts";
export type { RawDelivery } from "./pubsub.ts";
export { type Message, type SubscribeOptions, Subscription } from "./subscription.ts";
export { serve, type ServeOptions, type Serving } from "./worker.ts";
export {
  BinderClient,
  type BinderNotification,
  binders,
  type BindersOptions,
  DEFAULT_TTL_MS,
  register,
  Registrar,
  type RegistrarFailure,
  resolve,
  type ServiceWatch,
  watchService,
} from "./discovery/mod.ts";
export * from "./contracts/mod.ts";
export {
  type Access,
  type AllMethods,
  type AnyEvent,
  type AnyMethod,
  type Authenticator,
  type CallOptions,
  type CodecName,
  type ConnSettings,
  type Contract,
  type Credentials,
  DistError,
  ERROR_CODES,
  type ErrorBody,
  type ErrorCode,
  type Event,
  type HelloClaim,
  type Identity,
  type Method,
  type MethodsOf,
  NOT_AUTHENTICATED,
  type ParamsOf,
  type Parse,
  parseJson,
  type PeerInfo,
  type Proof,
  type Resource,
  type ResultOf,
  type SaltAndCost,
  type ScramKeys,
  type ScryptCost,
  type ServiceHandlers,
  type TlsSettings,
  type TypedResponse,
} from "../wire/mod.ts";
export type { Address } from "../config/values.ts";
// For a program's own contracts (what serve() serves): methods, events, parsers.
export { event, method, type MethodDef } from "../wire/contract.ts";
export * from "../wire/check.ts";
