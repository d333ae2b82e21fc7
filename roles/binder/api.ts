/**
 * The binder's methods: each request checked, then handed to the registry,
 * the replicator, the verifier or the watchers. Client methods wait (bounded
 * by the catch-up) until the binder has caught up with its peers, so a
 * binder never answers from a state it has not pulled yet.
 */
import { DistError, type Peer } from "../../wire/mod.ts";
import { binder, type Instance, MAX_LIST, type ReportAnswer } from "../../clients/contracts/mod.ts";
import type { Registry } from "./registry.ts";
import { registrationOf, toInstance } from "./records.ts";
import type { Replicator } from "./replication.ts";
import type { Verifier } from "./verify.ts";
import type { Watchers } from "./watch.ts";
import { binderPeers } from "./peer_contract.ts";
import { type Serving, serving } from "../_shell.ts";

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
  /** With a data directory: resolves once every change so far is on disk. */
  committed?: () => Promise<void>;
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
): Instance[] | undefined {
  // The weight is about the JSON text; MessagePack can be smaller, so allow twice the frame.
  if (registry.weightOf(service, 2 * maxFrame) > 2 * maxFrame) return undefined;
  return registry.instances(service).map(toInstance);
}

/** The binder's methods (the binder contract and replication's) and their handlers. */
export function binderServing(parts: BinderParts): Serving {
  const { registry, replicator, verifier, watchers } = parts;
  // A page's weight is an upper bound of its JSON text, and a UTF-8 byte per character of it
  // may be three: a quarter of the frame always fits, in either codec.
  const pageBytes = Math.max(4096, Math.floor(parts.maxFrame / 4));
  /** Runs `f` now if caught up, else once caught up. */
  const whenReady = <T>(f: () => T | Promise<T>): T | Promise<T> =>
    replicator.isReady ? f() : replicator.ready.then(f);

  /** `answer` once the change it acknowledges is stored (at once without a data directory). */
  const stored = <T>(answer: T): T | Promise<T> =>
    parts.committed === undefined ? answer : parts.committed().then(() => answer);

  async function reportDown(id: string, peer: Peer): Promise<ReportAnswer> {
    const entry = registry.get(id);
    if (entry === undefined) throw new DistError("NOT_FOUND", `Unknown instance ${id}`);
    if (entry.removed !== undefined) return { id, alive: false, removed: true };
    const alive = await verifier.verify(entry, peer);
    return { id, alive, removed: registry.get(id)?.removed !== undefined };
  }

  return serving([binder, binderPeers], {
    "binder.lookup": (p) => whenReady(() => toInstance(registry.lookup(p.service))),
    "binder.register": (p) =>
      whenReady(() => {
        const entry = registry.register(registrationOf(p, parts.defaultTtlMs));
        return stored({ id: entry.id, ttl_ms: entry.ttlMs });
      }),
    "binder.renew": (p) =>
      whenReady(() => stored({ id: p.id, ttl_ms: registry.renew(p.id).ttlMs })),
    "binder.deregister": (p) =>
      whenReady(() => {
        if (registry.remove(p.id, "deregistered") === undefined) {
          throw new DistError("NOT_FOUND", `Unknown instance ${p.id}`);
        }
        return stored({ id: p.id, removed: true as const });
      }),
    "binder.list": (p) =>
      whenReady(() => {
        const page = registry.page(p.service, p.after, p.limit ?? MAX_LIST, pageBytes);
        const instances = page.entries.map(toInstance);
        return page.next === undefined ? { instances } : { instances, next: page.next };
      }),
    "binder.report_down": (p, peer) => whenReady(() => reportDown(p.id, peer)),
    "binder.watch": (p, peer) =>
      whenReady(() => {
        const instances = watchList(registry, p.service, parts.maxFrame);
        if (instances === undefined) {
          throw new DistError(
            "FRAME_TOO_LARGE",
            `Service ${p.service} has too many instances to send in one frame: ` +
              `page through them with binder.list`,
          );
        }
        const refused = watchers.add(peer, p.service);
        if (refused === "connection") {
          throw new DistError("OVERLOADED", "Too many watches on one connection");
        }
        if (refused === "binder") {
          throw new DistError(
            "OVERLOADED",
            `Too many watches on this binder (--max-watches ${watchers.max})`,
          );
        }
        return { service: p.service, instances };
      }),
    "binder.unwatch": (p, peer) => {
      watchers.remove(peer, p.service);
      return { service: p.service, watching: false };
    },
    // On this listener, the sync came on a connection the peer dialed: it must prove itself.
    "binder.sync": (p, peer) => replicator.onSync(p, peer),
    "binder.diff": (p, peer) => replicator.onDiff(p, peer),
  }, {
    // A push (binder.sync as a notification) has no answer to carry an error.
    onBadNotification: (_method, err, peer) => replicator.badPush(err, peer),
  });
}
