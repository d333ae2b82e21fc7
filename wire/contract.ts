/**
 * A service's methods, each defined once (wire name, params parser, result
 * parser, the error codes it answers) and used by both sides: the serving
 * side through {@link dispatch}, the one place a request meets its handler,
 * and the calling side through the typed calls ({@link call},
 * {@link request}), which check the answer as carefully as the server
 * checks the request. The contracts themselves are in clients/contracts/.
 */
import { describe, DistError, type ErrorCode } from "./errors.ts";
import type { Parse } from "./check.ts";
import type { CallOptions } from "./calls.ts";
import type { Resource } from "./credentials.ts";
import type { Peer } from "./peer.ts";
import type { NotificationHandler, RequestHandler, RequestMeta } from "./peer_options.ts";

/** One request method of a service. */
export interface Method<N extends string = string, P = unknown, R = unknown> {
  /** Tells a method from an event. */
  readonly kind: "method";
  /** The wire name (`binder.lookup`). */
  readonly name: N;
  /** Checks the params where the method is served (BAD_REQUEST naming the field). */
  readonly params: Parse<P>;
  /** Checks the result where it was called (a malformed one fails the call: INTERNAL). */
  readonly result: Parse<R>;
  /** Whether it may also come as a notification, unanswered (`broker.publish`). */
  readonly notify: boolean;
  /** False: callers mark it `"idem": false`, so a balancer never sends it twice. */
  readonly idempotent: boolean;
  /** The codes it answers besides the wire's own (the conformance suite has a case each). */
  readonly errors: readonly ErrorCode[];
  /** Handshake roles allowed to call it (`["binder"]`); anyone when absent. */
  readonly from?: readonly string[];
  /**
   * What a request acts on (its topic, its service, the role it takes on),
   * which a users file's permission of that kind governs instead of the
   * method's name; absent: the method's name is checked.
   */
  // A method signature (bivariant), so a Method<N, P, R> is still a Method<string, unknown, R>.
  resource?(params: P): Resource;
}

/** A notification a service sends unasked (`binder.changed`, `broker.message`). */
export interface Event<N extends string = string, P = unknown> {
  /** Tells an event from a method. */
  readonly kind: "event";
  /** The wire name (`binder.changed`). */
  readonly name: N;
  /** Checks the params where the event is received. */
  readonly params: Parse<P>;
}

/** Any method, whatever its types. */
// deno-lint-ignore no-explicit-any
export type AnyMethod = Method<string, any, any>;
/** Any event, whatever its types. */
// deno-lint-ignore no-explicit-any
export type AnyEvent = Event<string, any>;

/** A service: its methods and events by short name, and the prefix of names it owns. */
export interface Contract {
  /** The service's name (`binder`). */
  readonly service: string;
  /** Names under it are this service's: one it does not define is UNKNOWN_METHOD. */
  readonly prefix: string;
  /** Its methods, by short name. */
  readonly methods: Readonly<Record<string, AnyMethod>>;
  /** What it sends unasked, by short name. */
  readonly events: Readonly<Record<string, AnyEvent>>;
  /** Other names of methods (the lab's `somma` for `add`), by alias. */
  readonly aliases?: Readonly<Record<string, string>>;
}

/** How {@link method} is told about a method besides its name. */
export interface MethodDef<P, R> {
  /** Checks the params (see {@link Method.params}). */
  params: Parse<P>;
  /** Checks the result (see {@link Method.result}). */
  result: Parse<R>;
  /** May come as a notification (default false). */
  notify?: boolean;
  /** May be sent twice (default true). */
  idempotent?: boolean;
  /** The codes it answers (default none). */
  errors?: readonly ErrorCode[];
  /** Handshake roles allowed to call it (default anyone). */
  from?: readonly string[];
  /** What a request acts on, for permissions (see {@link Method.resource}). */
  resource?: (params: P) => Resource;
}

/** Defines a method (frozen: a contract is shared by everything that imports it). */
export function method<const N extends string, P, R>(
  name: N,
  def: MethodDef<P, R>,
): Method<N, P, R> {
  return Object.freeze({
    kind: "method",
    name,
    params: def.params,
    result: def.result,
    notify: def.notify ?? false,
    idempotent: def.idempotent ?? true,
    errors: def.errors ?? [],
    ...(def.from === undefined ? {} : { from: def.from }),
    ...(def.resource === undefined ? {} : { resource: def.resource }),
  });
}

/** Defines an event. */
export function event<const N extends string, P>(name: N, params: Parse<P>): Event<N, P> {
  return Object.freeze({ kind: "event", name, params });
}

/** The params type of a method. */
// deno-lint-ignore no-explicit-any
export type ParamsOf<M> = M extends Method<string, infer P, any> ? P : never;
/** The result type of a method. */
// deno-lint-ignore no-explicit-any
export type ResultOf<M> = M extends Method<string, any, infer R> ? R : never;

/** Every method of every contract in the union C. */
export type AllMethods<C> = C extends Contract ? C["methods"][keyof C["methods"]] : never;
/** The methods of some contracts, by wire name. */
export type MethodsOf<Cs extends readonly Contract[]> = {
  [M in AllMethods<Cs[number]> as M["name"]]: M;
};

/** Answers one request of method M: its result (or a Promise of it), or throws a DistError. */
export type Handler<M> = (
  params: ParamsOf<M>,
  peer: Peer,
  meta: RequestMeta,
) => ResultOf<M> | Promise<ResultOf<M>>;

/** One handler per method of `Cs`, by wire name: a missing or extra one does not compile. */
export type Handlers<Cs extends readonly Contract[]> = {
  [N in keyof MethodsOf<Cs>]: Handler<MethodsOf<Cs>[N]>;
};

/**
 * One function per method of `Cs`, by wire name, that needs only the params
 * (what a program serving its own contracts writes; assignable to
 * {@link Handlers}).
 */
export type ServiceHandlers<Cs extends readonly Contract[]> = {
  [N in keyof MethodsOf<Cs>]: (
    params: ParamsOf<MethodsOf<Cs>[N]>,
  ) => ResultOf<MethodsOf<Cs>[N]> | Promise<ResultOf<MethodsOf<Cs>[N]>>;
};

/** What runs around every dispatched request: permissions, metrics, a debug log. */
export interface DispatchHooks {
  /** After the params parsed, before the handler. @throws {DistError} to refuse (UNAUTHORIZED) */
  before?(method: AnyMethod, params: unknown, peer: Peer): void;
  /** Once the request is answered; `error` when it failed. */
  after?(method: AnyMethod, startedAt: number, error: DistError | undefined): void;
}

/** How {@link dispatch} treats what its contracts do not define. */
export interface DispatchOptions {
  /** Answers any method no contract owns (the balancer forwards them); else UNKNOWN_METHOD. */
  fallback?: RequestHandler;
  hooks?: DispatchHooks;
  /** The UNKNOWN_METHOD message (when it returns undefined: `Unknown method: NAME`). */
  unknown?: (method: string) => string | undefined;
  /** A notification of a `notify` method whose params or handler failed (default: thrown). */
  onBadNotification?: (method: string, err: DistError, peer: Peer) => void;
  /** A notification no method takes (ignored: answering each would amplify garbage). */
  onUnknownNotification?: (method: string, peer: Peer) => void;
}

/** A Peer's handlers made of contracts and their handlers. */
export interface Dispatch {
  readonly onRequest: RequestHandler;
  readonly onNotification: NotificationHandler;
  /** Whether `method` is answered here (defined, or under an owned prefix). */
  claims(method: string): boolean;
}

interface Entry {
  method: AnyMethod;
  handler: Handler<AnyMethod>;
}

/**
 * The one dispatch point: a request's method is looked up (a Map: names
 * like `constructor` are nobody's), refused if its caller's handshake role
 * is not allowed, its params parsed, refused if the caller's identity (on
 * a listener that authenticates) lacks the permission, then its handler
 * called. A method that no contract defines is UNKNOWN_METHOD when under
 * an owned prefix or when there is no `fallback` (what a fallback answers
 * is checked as a method too); a notification is taken only by `notify`
 * methods.
 */
export function dispatch<const Cs extends readonly Contract[]>(
  contracts: Cs,
  handlers: NoInfer<Handlers<Cs>>,
  options: DispatchOptions = {},
): Dispatch {
  // The one cast: the mapped type, checked at this call, to a table.
  const byName = handlers as unknown as Record<string, Handler<AnyMethod>>;
  const table = new Map<string, Entry>();
  for (const c of contracts) {
    for (const m of Object.values(c.methods)) {
      const handler = byName[m.name];
      if (typeof handler !== "function") throw new Error(`No handler for ${m.name}`);
      table.set(m.name, { method: m, handler });
    }
    for (const [alias, name] of Object.entries(c.aliases ?? {})) table.set(alias, table.get(name)!);
  }
  const owned = owns(contracts.filter((c) => c.prefix !== ""));
  const { fallback, hooks, unknown } = options;
  const notFound = (name: string): never => {
    const message = unknown?.(name) ?? `Unknown method: ${describe(name, 200)}`;
    throw new DistError("UNKNOWN_METHOD", message);
  };
  const run = hooks === undefined
    ? (e: Entry, params: unknown, peer: Peer, meta: RequestMeta) =>
      e.handler(admit(e.method, params, peer), peer, meta)
    : (e: Entry, params: unknown, peer: Peer, meta: RequestMeta) =>
      hooked(e, hooks, params, peer, meta);
  const onRequest: RequestHandler = (name, params, peer, meta) => {
    const e = table.get(name);
    if (e !== undefined) return run(e, params, peer, meta);
    if (fallback !== undefined && !owned(name)) {
      // What the fallback answers (the balancer forwards it) is a method like any other.
      peer.identity?.access?.check(name);
      return fallback(name, params, peer, meta);
    }
    return notFound(name);
  };
  const onNotification: NotificationHandler = (name, params, peer) => {
    const e = table.get(name);
    if (e === undefined || !e.method.notify) return options.onUnknownNotification?.(name, peer);
    const bad = options.onBadNotification;
    try {
      const r = e.handler(admit(e.method, params, peer), peer, NOTIFIED);
      if (r instanceof Promise && bad !== undefined) {
        r.catch((err) => bad(name, DistError.from(err), peer));
      }
    } catch (err) {
      if (bad === undefined) throw err;
      bad(name, DistError.from(err), peer);
    }
  };
  return { onRequest, onNotification, claims: (name) => table.has(name) || owned(name) };
}

/**
 * Whether a method name is under one of the contracts' prefixes (or is one
 * of their methods): what a byte-level path leaves to {@link dispatch}.
 */
export function owns(contracts: readonly Contract[]): (method: string) => boolean {
  const prefixes = contracts.map((c) => c.prefix).filter((p) => p !== "");
  const names = new Set(contracts.flatMap((c) => Object.values(c.methods).map((m) => m.name)));
  return (method) => names.has(method) || prefixes.some((p) => method.startsWith(p));
}

const NOTIFIED: RequestMeta = Object.freeze({ idempotent: true });

/**
 * The params of a request to `m` from `peer`, checked: its handshake role,
 * its params, then its permission (a method restricted to roles needs the
 * caller granted the role it claims; one acting on a resource needs that
 * resource's permission; any other, the method's).
 */
function admit(m: AnyMethod, params: unknown, peer: Peer): unknown {
  if (m.from !== undefined && !m.from.includes(peer.remote.role)) {
    const who = m.from.map((r) => `"${r}"`).join(", ");
    throw new DistError(
      "UNAUTHORIZED",
      `${m.name} is for ${m.from.join(", ")}s (handshake role ${who}), not ${
        describe(peer.remote.role, 40)
      }`,
    );
  }
  const p = m.params(params);
  permit(m, p, peer);
  return p;
}

/**
 * Refuses a request to `m` with its parsed params `p` that `peer` may not
 * make (its identity's access, when it has one): what {@link dispatch}
 * checks, for a byte-level path that takes requests itself (the broker's
 * publishes) to check the same way.
 * @throws {DistError} UNAUTHORIZED naming the permission missing
 */
export function permit(m: AnyMethod, p: unknown, peer: Peer): void {
  const access = peer.identity?.access;
  if (access !== undefined) {
    access.check(
      m.name,
      m.from !== undefined ? { action: "role", name: peer.remote.role } : m.resource?.(p),
    );
  }
}

function hooked(
  e: Entry,
  hooks: DispatchHooks,
  params: unknown,
  peer: Peer,
  meta: RequestMeta,
): unknown {
  const t0 = performance.now();
  const done = (err?: unknown) =>
    hooks.after?.(e.method, t0, err === undefined ? undefined : DistError.from(err));
  try {
    const p = admit(e.method, params, peer);
    hooks.before?.(e.method, p, peer);
    const r = e.handler(p, peer, meta);
    if (!(r instanceof Promise)) return (done(), r);
    return r.then((v) => (done(), v), (err) => {
      done(err);
      throw err;
    });
  } catch (err) {
    done(err);
    throw err;
  }
}

// ---- the calling side ----

/** Something that sends requests: a Peer, a client Connection, a binder client. */
export interface Requester {
  request(method: string, params?: unknown, options?: CallOptions): Promise<Response>;
}

/** A response: the result and who did the work. */
export interface TypedResponse<R> {
  /** The result. */
  result: R;
  /** The process that did the work (a balancer passes it through). */
  by?: string;
}
type Response = TypedResponse<unknown>;

/**
 * Calls `m` through `to` and resolves with its result, checked.
 * @throws {DistError} the peer's error, a local TIMEOUT or UNAVAILABLE, or
 * INTERNAL `Malformed answer to METHOD from NAME: …` when the result is not
 * what the contract says
 */
export function call<N extends string, P, R>(
  to: Requester,
  m: Method<N, P, R>,
  params: NoInfer<P>,
  options?: CallOptions,
): Promise<R> {
  return request(to, m, params, options).then((r) => r.result);
}

/** Like {@link call}, but resolves with the result and the `by` of the response. */
export function request<N extends string, P, R>(
  to: Requester,
  m: Method<N, P, R>,
  params: NoInfer<P>,
  options?: CallOptions,
): Promise<TypedResponse<R>> {
  const opts = m.idempotent || options?.idempotent === false
    ? options
    : { ...options, idempotent: false };
  return to.request(m.name, params, opts).then((r) => {
    r.result = checkResult(m, r.result, r.by);
    return r as TypedResponse<R>;
  });
}

/** A result checked by its method's parser; a malformed one is INTERNAL. */
export function checkResult<R>(m: Method<string, unknown, R>, result: unknown, by?: string): R {
  try {
    return m.result(result, "result");
  } catch (err) {
    const from = by === undefined ? "" : ` from ${describe(by, 60)}`;
    throw new DistError(
      "INTERNAL",
      `Malformed answer to ${m.name}${from}: ${(err as Error).message}`,
    );
  }
}

/**
 * Sends an event of a contract to `peer`, typed.
 * @returns false if the connection is closed
 */
export function emit<N extends string, P>(peer: Peer, e: Event<N, P>, params: NoInfer<P>): boolean {
  return peer.notify(e.name, params);
}
