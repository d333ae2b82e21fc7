/**
 * The binder's methods: each request checked, then handed to the registry,
 * the replicator, the verifier or the watchers. Client methods wait (bounded
 * by the catch-up) until the binder has caught up with its peers, so a
 * binder never answers from a state it has not pulled yet.
 */
import { DistError, type Peer } from "../../wire/mod.ts";
import type { Registry } from "./registry.ts";
import {
  checkId,
  checkService,
  type InstanceInfo,
  paramsObject,
  parseRegistration,
  toInstance,
} from "./records.ts";
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
  /** The frame limit of the binder's connections (bytes): no answer is built bigger. */
  maxFrame: number;
  /** `sys.ping` and `sys.stats` answers. */
  ping: () => unknown;
  stats: () => unknown;
}

/** Most instances in one `binder.list` answer (fewer when they would not fit a frame). */
export const MAX_LIST = 1000;

/** Answers of `binder.list`: `next` is there when more instances follow (pass it as `after`). */
export interface ListAnswer {
  instances: InstanceInfo[];
  next?: string;
}

/**
 * The live instances of `service` as watchers see them, or undefined when
 * the list is surely too large for one frame of `maxFrame` bytes (it is
 * then not built). A list that passes may still turn out too large once
 * encoded; the codec refuses it then.
 */
export function watchList(
  registry: Registry,
  service: string,
  maxFrame: number,
): InstanceInfo[] | undefined {
  // The weight is about the JSON text; MessagePack can be smaller, so allow twice the frame.
  if (registry.weightOf(service, 2 * maxFrame) > 2 * maxFrame) return undefined;
  return registry.instances(service).map(toInstance);
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
  // A page's weight is an upper bound of its JSON text, and a UTF-8 byte per character of it
  // may be three: a quarter of the frame always fits, in either codec.
  const pageBytes = Math.max(4096, Math.floor(parts.maxFrame / 4));
  const watchedList = (service: string) => watchList(registry, service, parts.maxFrame);
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

  type Handler = (p: Record<string, unknown>, peer: Peer) => unknown;
  // A Map, not an object: a method named "constructor" or "__proto__" must
  // find nothing rather than something of Object.prototype.
  const methods = new Map<string, Handler>(Object.entries(
    {
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
        const after = p.after === undefined ? undefined : checkId(p.after, "after");
        const limit = p.limit ?? MAX_LIST;
        if (!Number.isInteger(limit) || (limit as number) < 1 || (limit as number) > MAX_LIST) {
          throw new DistError("BAD_REQUEST", `"limit" must be an integer 1-${MAX_LIST}`);
        }
        return whenReady(() => {
          const page = registry.page(service, after, limit as number, pageBytes);
          const answer: ListAnswer = { instances: page.entries.map(toInstance) };
          if (page.next !== undefined) answer.next = page.next;
          return answer;
        });
      },
      "binder.report_down": (p, peer) => {
        const id = checkId(p.id);
        return whenReady(() => reportDown(id, peer));
      },
      "binder.watch": (p, peer) => {
        const service = checkService(p.service);
        return whenReady(() => {
          const instances = watchedList(service);
          if (instances === undefined) {
            throw new DistError(
              "FRAME_TOO_LARGE",
              `Service ${service} has too many instances to send in one frame: ` +
                `page through them with binder.list`,
            );
          }
          if (!watchers.add(peer, service)) {
            throw new DistError("OVERLOADED", "Too many watches on one connection");
          }
          return { service, instances };
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
    } satisfies Record<string, Handler>,
  ));

  return {
    onRequest(method: string, params: unknown, peer: Peer): unknown {
      if (method === "sys.ping") return parts.ping();
      if (method === "sys.stats") return parts.stats();
      const handler = methods.get(method);
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
