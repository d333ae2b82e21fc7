/**
 * The binder's methods: each request checked, then handed to the registry,
 * the replicator, the verifier or the watchers. Client methods wait (bounded
 * by the catch-up) until the binder has caught up with its peers, so a
 * binder never answers from a state it has not pulled yet.
 */
import { type Codec, DistError, OutBuffer, type Peer } from "../../wire/mod.ts";
import { binder, type Instance, MAX_LIST, type ReportAnswer } from "../../clients/contracts/mod.ts";
import { instanceId, type Registry } from "./registry.ts";
import type { SourceQuota } from "./quota.ts";
import { machineSource } from "../../auth/mod.ts";
import { canonicalHost, undialableHost } from "../../config/mod.ts";
import { registrationOf, toInstance } from "./records.ts";
import type { Replicator } from "./replication.ts";
import type { Verifier } from "./verify.ts";
import type { Watchers } from "./watch.ts";
import { binderPeers } from "./peer_contract.ts";
import { type Serving, serving } from "../_shell.ts";
import { binderTurns, chargeLookup, LEAST_MS } from "./turns.ts";
import { CostlyTurns } from "../_costly_turns.ts";

/** What the methods work on. */
export interface BinderParts {
  registry: Registry;
  replicator: Replicator;
  verifier: Verifier;
  watchers: Watchers;
  /** `--max-per-source`: live instances one client source may register here. */
  quota?: SourceQuota;
  /**
   * Who registered each live instance here (the same counts as `quota`,
   * kept when it bounds nothing): watchers get each instance's
   * `registrant` tag.
   */
  registrants?: SourceQuota;
  /** Lease of a registration that names no `ttl_ms` (ms). */
  defaultTtlMs: number;
  /** The frame limit of the binder's connections (bytes): no answer is built bigger. */
  maxFrame: number;
  /** With a data directory: resolves once every change so far is on disk. */
  committed?: () => Promise<void>;
}

/** What an answer takes besides its result, at most (its id, `by`, keys). */
const ANSWER_OVERHEAD = 4096;

/**
 * The live instances of `service` as watchers see them (each with its
 * `registrant`, when `registrants` knows it), or undefined when
 * the list is surely too large for one frame of `maxFrame` bytes (it is
 * then not built). Weights count characters, so past a quarter of the frame
 * (a character may take 3 bytes of UTF-8) a list meant for a `codec` is
 * encoded to measure it: the answer of a watch must fit, since the watch is
 * kept once it is sent. A notification's list (no codec) may still turn out
 * too large once encoded; the codec refuses it then.
 */
export function watchList(
  registry: Registry,
  service: string,
  maxFrame: number,
  codec?: Codec,
  registrants?: SourceQuota,
): Instance[] | undefined {
  // The weight is about the JSON text; MessagePack can be smaller, so allow twice the frame.
  const weight = registry.weightOf(service, 2 * maxFrame);
  if (weight > 2 * maxFrame) return undefined;
  const list = registry.instances(service).map((e) =>
    toInstance(e, registrants?.registrantOf(e.id))
  );
  if (codec === undefined || weight <= maxFrame / 4) return list;
  try {
    codec.writeFrame(
      new OutBuffer(),
      { result: { service, instances: list } },
      maxFrame - ANSWER_OVERHEAD,
    );
  } catch {
    return undefined;
  }
  return list;
}

/** The binder's methods (the binder contract and replication's) and their handlers. */
export function binderServing(parts: BinderParts): Serving {
  const { registry, replicator, watchers } = parts;
  // A page's weight is an upper bound of its JSON text, and a UTF-8 byte per character of it
  // may be three: a quarter of the frame always fits, in either codec.
  const pageBytes = Math.max(4096, Math.floor(parts.maxFrame / 4));
  /** Runs `f` now if caught up, else once caught up. */
  const whenReady = <T>(f: () => T | Promise<T>): T | Promise<T> =>
    replicator.isReady ? f() : replicator.ready.then(f);
  const turns = new CostlyTurns({ msPerRequest: LEAST_MS });
  return serving([binder, binderPeers], {
    "binder.lookup": (p) =>
      whenReady(() => {
        const entry = registry.lookup(p.service);
        chargeLookup(turns, entry);
        return toInstance(entry);
      }),
    "binder.register": (p, peer) =>
      whenReady(() => {
        const undialable = undialableHost(p.host);
        if (undialable !== undefined) {
          throw new DistError(
            "BAD_REQUEST",
            `"host" ${p.host} is ${undialable}: no client could dial it; register the address clients dial`,
          );
        }
        // One spelling per address: `0x7f000001` is 127.0.0.1's instance, not one more (review45 R7).
        const reg = registrationOf({ ...p, host: canonicalHost(p.host) }, parts.defaultTtlMs);
        const source = machineSource(peer.identity?.user, peer.conn.remoteHost);
        const id = instanceId(reg.service, reg.host, reg.port);
        const live = registry.get(id);
        if (live === undefined || !registry.isLive(live)) {
          parts.quota?.check(source, id, (held) => {
            const entry = registry.get(held);
            return entry !== undefined && registry.isLive(entry);
          });
        }
        const entry = registry.register(reg, source);
        (parts.registrants ?? parts.quota)?.took(source, entry.id);
        return stored(parts, { id: entry.id, ttl_ms: entry.ttlMs });
      }),
    "binder.renew": (p) =>
      whenReady(() => stored(parts, { id: p.id, ttl_ms: registry.renew(p.id).ttlMs })),
    "binder.deregister": (p) => whenReady(() => deregister(parts, p.id)),
    "binder.list": (p) =>
      whenReady(() => {
        const page = registry.page(p.service, p.after, p.limit ?? MAX_LIST, pageBytes);
        const instances = page.entries.map((e) => toInstance(e));
        return page.next === undefined ? { instances } : { instances, next: page.next };
      }),
    "binder.report_down": (p, peer) => whenReady(() => reportDown(parts, p.id, peer)),
    "binder.watch": (p, peer) => whenReady(() => watch(parts, p.service, peer)),
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
    // Watches, list pages, lookups and stats take a few ms a turn (turns.ts).
    wrap: binderTurns(registry, pageBytes, turns),
  });
}

/** `answer` once the change it acknowledges is stored (at once without a data directory). */
function stored<T>(parts: BinderParts, answer: T): T | Promise<T> {
  return parts.committed === undefined ? answer : parts.committed().then(() => answer);
}

/** binder.deregister. @throws {DistError} NOT_FOUND for an unknown id */
function deregister(parts: BinderParts, id: string) {
  if (parts.registry.remove(id, "deregistered") === undefined) {
    throw new DistError("NOT_FOUND", `Unknown instance ${id}`);
  }
  return stored(parts, { id, removed: true as const });
}

/** binder.report_down: checks the instance, which goes if it does not answer. */
async function reportDown(parts: BinderParts, id: string, peer: Peer): Promise<ReportAnswer> {
  const { registry } = parts;
  const entry = registry.get(id);
  if (entry === undefined) throw new DistError("NOT_FOUND", `Unknown instance ${id}`);
  if (entry.removed !== undefined) return { id, alive: false, removed: true };
  const alive = await parts.verifier.verify(entry, peer);
  return { id, alive, removed: registry.get(id)?.removed !== undefined };
}

/**
 * binder.watch: the instances of `service` now, and its changes from now on.
 * @throws {DistError} FRAME_TOO_LARGE when the list cannot go in one frame,
 * OVERLOADED past the watches a connection or the binder may have
 */
function watch(parts: BinderParts, service: string, peer: Peer) {
  const instances = watchList(
    parts.registry,
    service,
    parts.maxFrame,
    peer.codec,
    parts.registrants,
  );
  if (instances === undefined) {
    throw new DistError(
      "FRAME_TOO_LARGE",
      `Service ${service} has too many instances to send in one frame: ` +
        `page through them with binder.list`,
    );
  }
  const refused = parts.watchers.add(peer, service);
  if (refused === "connection") {
    throw new DistError("OVERLOADED", "Too many watches on one connection");
  }
  if (refused === "binder") {
    throw new DistError(
      "OVERLOADED",
      `Too many watches on this binder (--max-watches ${parts.watchers.max})`,
    );
  }
  return { service, instances };
}
