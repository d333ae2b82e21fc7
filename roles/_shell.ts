/**
 * The one shell of the listening roles (server, broker, binder, balancer):
 * it binds the port, settles the instance's name (`--name`, or `ROLE-PORT`
 * once port 0 has picked one), lets the role build its parts (`setUp`),
 * then accepts, answering `sys.ping`, `sys.stats` and UNKNOWN_METHOD the
 * same way for every role through {@link dispatch}; it announces
 * `Listening on`, waits for the stop signal and closes with `--grace`. A
 * role's fast paths (the broker's byte-level publishes, the balancer's
 * pass-through) go to the listener as they are, except for connections
 * whose permissions are checked (a users file's users): theirs are
 * dispatched, where the checks are, unless the path checks them itself.
 */
import type { Logger } from "@logtape/logtape";
import type { LISTENER_OPTIONS, RoleOptions } from "../config/mod.ts";
import {
  type BoundPort,
  type Contract,
  dispatch,
  type DispatchOptions,
  type FastHooks,
  type Handlers,
  type Listener,
  type ListenOptions,
  type NotificationHandler,
  type Peer,
  type RequestHandler,
} from "../wire/mod.ts";
import { sys } from "../clients/contracts/mod.ts";
import { announceListening, type RunContext, untilAborted } from "./_role.ts";
import { setLogInstance } from "./_logging.ts";
import { connSettings } from "./_flags.ts";
import { bindOn, connectionMetrics } from "./_listen.ts";
import { roleStatMetrics, RpcMetrics } from "../obs/mod.ts";

/** The options every listening role has (its `--port` has its own default). */
export type ShellOptions = RoleOptions<typeof LISTENER_OPTIONS> & { readonly port: number };

/** What a role serves on a port besides `sys.*`: made by {@link serving}. */
export interface Serving {
  readonly contracts: readonly Contract[];
  readonly handlers: object;
  readonly options: DispatchOptions & {
    /** Wraps the request handler (counting, the debug log); not the fast paths. */
    wrap?: (handler: RequestHandler) => RequestHandler;
    /** Wraps the notification handler likewise. */
    wrapNotification?: (handler: NotificationHandler) => NotificationHandler;
  };
}

/**
 * The contracts a role serves and their handlers, checked here at compile
 * time: one per method, each returning the method's result.
 */
export function serving<const Cs extends readonly Contract[]>(
  contracts: Cs,
  handlers: NoInfer<Handlers<Cs>>,
  options: Serving["options"] = {},
): Serving {
  return { contracts, handlers, options };
}

/** The port bound, before anything is accepted on it. */
export interface Bound {
  readonly addr: { hostname: string; port: number };
  /** The instance's name, settled. */
  readonly name: string;
  /** The connections of the main port, once it accepts. */
  readonly peers: ReadonlySet<Peer>;
  /** A second port of the role (the balancer's workers), bound now, accepting with the main one. */
  also(port: number, flag: string, serve: Serving): { readonly addr: Listener["addr"] };
}

/** What a role's `setUp` gives the shell. */
export interface Served {
  /** What the main port serves besides `sys.*`. */
  serve: Serving;
  /** The role's part of `sys.stats` (after role, name, uptime_ms and rss_bytes). */
  stats(): Record<string, unknown>;
  /** Byte-level paths, given to the listener as they are. */
  fast?: FastHooks;
  onPeer?(peer: Peer): void;
  /** Whether a source's new connections are taken at a pace now (wire/accept_pace.ts). */
  paced?(source: string): string | undefined;
  /** Runs once `Listening on` is said (start background work, say more). */
  started?(): void;
  /** What a forced exit would abandon ("3 requests in flight"), if anything. */
  inFlight?(): string | undefined;
  /** On the stop signal, before the port closes (say so, deregister). */
  stopping?(): void | Promise<void>;
  /** Once the main port has closed, before the others do (stop the rest, say the last line). */
  stopped?(): void | Promise<void>;
}

/** How {@link listening} runs a role. */
export interface ShellDef {
  role: string;
  log: Logger;
  options: ShellOptions;
  /** The flag that chose the port, for a busy port's message (default `--port`). */
  portFlag?: string;
  /** Listener settings beyond the options' (the broker's outbound bound). */
  listen?: Partial<ListenOptions>;
  /** Builds the role's parts once the port is bound and the name settled. */
  setUp(bound: Bound): Served;
}

/** Runs a listening role until `ctx.signal`; resolves with its exit code. */
export async function listening(ctx: RunContext, def: ShellDef): Promise<number> {
  const { options, role } = def;
  const started = performance.now();
  const settings = connSettings(options);
  const port = bindOn(def.portFlag ?? "--port", { ...options, tls: settings.tls });
  const name = options.name ?? `${role}-${port.addr.port}`;
  setLogInstance(name);
  const base = { ...settings, role, name, by: name, ...def.listen };
  const { served, others, main } = setUpRole(def, port, name, settings.tls);
  const handlers = portHandlers(ctx, { role, name, started, base, main }, served);
  const listener = main.listener = port.start({
    ...base,
    maxConnections: options.maxConnections,
    maxConnectionsPerSource: options.maxConnectionsPerSource,
    ...handlers.of(served.serve),
    ...checkedFast(served.fast),
    onPeer: handlers.onPeer(served.onPeer),
    paced: served.paced,
  });
  const more = others.map((o) => o.port.start({ ...base, ...handlers.of(o.serve) }));
  announceListening(ctx, def.log, { addr: port.addr, name });
  served.started?.();
  if (served.inFlight) ctx.onForcedExit?.(served.inFlight);
  await untilAborted(ctx.signal);
  await served.stopping?.();
  await listener.close(options.grace);
  await served.stopped?.();
  await Promise.all(more.map((l) => l.close(0)));
  return 0;
}

/** A second port a role asked for with `also()`, bound, not yet accepting. */
interface OtherPort {
  port: BoundPort;
  serve: Serving;
}

/**
 * Lets the role build its parts on the bound port (and bind any other it
 * asks for); on a throw, every port bound is closed.
 */
function setUpRole(def: ShellDef, port: BoundPort, name: string, tls: ListenOptions["tls"]) {
  const others: OtherPort[] = [];
  // Set once accepting starts; `peers` is read only after.
  const main: { listener?: Listener } = {};
  try {
    const served = def.setUp({
      addr: port.addr,
      name,
      get peers() {
        return main.listener?.peers ?? new Set<Peer>();
      },
      also(p, flag, serve) {
        const bound = bindOn(flag, { host: def.options.host, port: p, tls });
        others.push({ port: bound, serve });
        return bound;
      },
    });
    return { served, others, main };
  } catch (err) {
    for (const p of [port, ...others.map((o) => o.port)]) p.close();
    throw err;
  }
}

/** Who the instance is, for `sys.ping` and `sys.stats`. */
interface Self {
  role: string;
  name: string;
  /** `performance.now()` when it started. */
  started: number;
  /** Its listeners' settings (the authenticator's counts go into `sys.stats`). */
  base: Pick<ListenOptions, "authenticator">;
  /** Its main port, once it accepts (its bounds on connections go into `sys.stats`). */
  main: { listener?: Listener };
}

/**
 * Makes the handlers of each port: what it serves plus `sys.ping` and
 * `sys.stats` through one {@link dispatch}. With `--metrics`, requests are
 * counted by each Peer where it answers them (a RequestCounter: no wrapper
 * on the hot path), notifications at dispatch, connections at onPeer;
 * without, the handlers are exactly the role's.
 */
function portHandlers(ctx: RunContext, self: Self, served: Served) {
  const { role, name, started } = self;
  const rpc = ctx.metrics && new RpcMetrics(ctx.metrics.registry);
  if (ctx.metrics) {
    ctx.metrics.name = name;
    roleStatMetrics(ctx.metrics.registry, role, () => served.stats());
    connectionMetrics(ctx.metrics.registry, () => self.main.listener);
  }
  const authenticator = self.base.authenticator;
  const of = (serve: Serving) => {
    const d = dispatch([sys, ...serve.contracts], {
      ...serve.handlers,
      "sys.ping": () => ({ pong: true, role, name }),
      "sys.stats": () => ({
        role,
        name,
        uptime_ms: Math.round(performance.now() - started),
        rss_bytes: Deno.memoryUsage().rss,
        ...served.stats(),
        // Hellos accepted and refused, where the instance checks credentials (--token, --users).
        ...(authenticator?.stats ? { auth: authenticator.stats() } : {}),
        // The main port's connections by source: refused, closed to make room (wire/sources.ts).
        ...(self.main.listener ? { connection_limits: self.main.listener.connectionStats() } : {}),
      }),
    } as never, serve.options); // each role's handlers were checked by serving()
    const onRequest = serve.options.wrap?.(d.onRequest) ?? d.onRequest;
    const onNotification = serve.options.wrapNotification?.(d.onNotification) ?? d.onNotification;
    if (rpc === undefined) return { onRequest, onNotification };
    rpc.learn([sys, ...serve.contracts]);
    return {
      onRequest,
      counter: rpc.counter(serve.options.fallback !== undefined),
      onNotification: rpc.wrapNotification(onNotification),
      onPeer: (peer: Peer) => rpc.peer(peer),
    };
  };
  /** The main port's onPeer: the role's, after counting the connection. */
  const onPeer = (own: ((peer: Peer) => void) | undefined) =>
    rpc === undefined ? own : (peer: Peer) => {
      rpc.peer(peer);
      own?.(peer);
    };
  return { of, onPeer };
}

/**
 * A role's byte-level paths, taken only by connections without
 * permissions to check, unless the path checks them itself (the broker's
 * publishes: `checksAccess`): a connection whose identity has them (a
 * users file's user) has every other request decoded and dispatched, where
 * its permissions are checked. Without a users file nothing changes.
 */
function checkedFast(fast: FastHooks | undefined): FastHooks | undefined {
  if (fast === undefined) return undefined;
  const { onRawRequest, rawFrames } = fast;
  return {
    onRawRequest: onRawRequest &&
      ((peer, request) => peer.identity?.access === undefined && onRawRequest(peer, request)),
    rawFrames: rawFrames?.checksAccess ? rawFrames : rawFrames && {
      accepts: (frame) => rawFrames.accepts(frame),
      handle: (frame, peer, took) =>
        peer.identity?.access === undefined && rawFrames.handle(frame, peer, took),
    },
  };
}
