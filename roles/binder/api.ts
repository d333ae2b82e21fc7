/**
 * The binder's methods: each request checked, then handed to the registry,
 * the replicator, the verifier or the watchers. Client methods wait (bounded
 * by the catch-up) until the binder has caught up with its peers, so a
 * binder never answers from a state it has not pulled yet.
 */
import { DistError, type Peer } from "../../wire/mod.ts";
import type { Registry } from "./registry.ts";
import { checkId, checkService, paramsObject, parseRegistration, toInstance } from "./records.ts";
import { type Replicator, requireBinder } from "./replication.ts";
import type { Verifier } from "./verify.ts";
import type { Watchers } from "./watch.ts";

/** What the methods work on. */
export interface BinderParts {
  registry: Registry;
  replicator: Replicator;
  verifier: Verifier;
  watchers: Watchers;
  /** Lease of a registration that names no `ttl_ms` (ms). */
  defaultTtlMs: number;
  /** `sys.ping` and `sys.stats` answers. */
  ping: () => unknown;
  stats: () => unknown;
}

/** Answers of `binder.report_down`. */
export interface ReportAnswer {
  id: string;
  alive: boolean;
  removed: boolean;
}

/** The request and notification handlers of a binder's listener. */
export function binderHandlers(parts: BinderParts) {
  const { registry, replicator, verifier, watchers } = parts;
  /** Runs `f` now if caught up, else once caught up. */
  const whenReady = <T>(f: () => T): T | Promise<T> =>
    replicator.isReady ? f() : replicator.ready.then(f);

  async function reportDown(id: string, peer: Peer): Promise<ReportAnswer> {
    const entry = registry.get(id);
    if (entry === undefined) throw new DistError("NOT_FOUND", `Unknown instance ${id}`);
    if (entry.removed !== undefined) return { id, alive: false, removed: true };
    const alive = await verifier.verify(entry, peer);
    return { id, alive, removed: registry.get(id)?.removed !== undefined };
  }

  const methods: Record<string, (p: Record<string, unknown>, peer: Peer) => unknown> = {
    "binder.lookup": (p) => {
      const service = checkService(p.service);
      return whenReady(() => toInstance(registry.lookup(service)));
    },
    "binder.register": (p) => {
      const reg = parseRegistration(p, parts.defaultTtlMs);
      return whenReady(() => {
        const entry = registry.register(reg);
        return { id: entry.id, ttl_ms: entry.ttlMs };
      });
    },
    "binder.renew": (p) => {
      const id = checkId(p.id);
      return whenReady(() => ({ id, ttl_ms: registry.renew(id).ttlMs }));
    },
    "binder.deregister": (p) => {
      const id = checkId(p.id);
      return whenReady(() => {
        if (registry.remove(id, "deregistered") === undefined) {
          throw new DistError("NOT_FOUND", `Unknown instance ${id}`);
        }
        return { id, removed: true };
      });
    },
    "binder.list": (p) => {
      const service = p.service === undefined ? undefined : checkService(p.service);
      return whenReady(() => ({ instances: registry.instances(service).map(toInstance) }));
    },
    "binder.report_down": (p, peer) => {
      const id = checkId(p.id);
      return whenReady(() => reportDown(id, peer));
    },
    "binder.watch": (p, peer) => {
      const service = checkService(p.service);
      return whenReady(() => {
        if (!watchers.add(peer, service)) {
          throw new DistError("OVERLOADED", "Too many watches on one connection");
        }
        return { service, instances: registry.instances(service).map(toInstance) };
      });
    },
    "binder.unwatch": (p, peer) => {
      const service = checkService(p.service);
      watchers.remove(peer, service);
      return { service, watching: false };
    },
    "binder.sync": (p, peer) => {
      requireBinder(peer, "binder.sync");
      return replicator.onSync(p);
    },
    "binder.diff": (p, peer) => {
      requireBinder(peer, "binder.diff");
      return replicator.onDiff(p, peer);
    },
  };

  return {
    onRequest(method: string, params: unknown, peer: Peer): unknown {
      if (method === "sys.ping") return parts.ping();
      if (method === "sys.stats") return parts.stats();
      const handler = methods[method];
      if (handler === undefined) {
        throw new DistError("UNKNOWN_METHOD", `Unknown method: ${method}`);
      }
      return handler(paramsObject(params ?? {}, method), peer);
    },
    onNotification(method: string, params: unknown, peer: Peer): void {
      // Pushes from peers are notifications; anything else sent that way is ignored.
      if (method === "binder.sync") replicator.onPush(params, peer);
    },
  };
}
