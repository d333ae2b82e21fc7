/**
 * @module
 * Discovery through binders, shared by every role that registers or looks up
 * services (the server, the client, the balancer). No role imports another:
 * they all use this module, which talks to binders only through wire/.
 *
 * - `binders.ts`: {@link BinderClient}, calls to a list of binders, starting
 *   at a random one and failing over to the next;
 * - `registrar.ts`: {@link Registrar}, a registration kept alive by renewals
 *   (re-registering when a binder forgot it), deregistered on stop;
 * - `resolver.ts`: {@link Resolver} (lookup, waiting for an instance;
 *   `report_down`) and {@link ServiceCaller}, a connection to some instance
 *   of a service that reports a failed instance and moves to another;
 * - `watch.ts`: {@link watchService}, a service's live instances pushed to a
 *   callback, moving to another binder when one goes away;
 * - `options.ts`: the flags (`--service`, `--binders`, `--advertise`, `--ttl`,
 *   `--wait`) and the wiring from them.
 */
export { BinderClient, type BinderClientOptions, type BinderNotification } from "./binders.ts";
export { Registrar, type RegistrationInfo } from "./registrar.ts";
export {
  type Instance,
  type ReportAnswer,
  Resolver,
  type ResolverOptions,
  ServiceCaller,
  type ServiceCallerOptions,
} from "./resolver.ts";
export { type ServiceWatch, watchService } from "./watch.ts";
export {
  bindersFrom,
  DEFAULT_BINDERS,
  DEFAULT_TTL_MS,
  DEFAULT_WAIT_MS,
  type PendingRegistration,
  REGISTER_OPTIONS,
  registrationFor,
  RESOLVE_OPTIONS,
  SERVICE_NAME,
  serviceConnector,
  serviceName,
} from "./options.ts";
