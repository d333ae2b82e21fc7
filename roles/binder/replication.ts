/**
 * Replication between binders (multi-master, last writer wins by stamp):
 *
 * - **Push**: every change made here is sent at once (one `binder.sync`
 *   notification per peer per turn of the event loop) over the connection
 *   this binder keeps to each peer, and to binders that dialed this one
 *   without being in its own list (so `--peers` given on one side only still
 *   replicates both ways at once). Changes merged from a peer are not
 *   forwarded: with every binder listing every other, the origin reaches all;
 *   anti-entropy covers the rest.
 * - **Anti-entropy**: on every (re)connection and then every `intervalMs`,
 *   this binder sends its digest (`binder.diff`); the peer answers with its
 *   entries in the buckets that differ (paged), this binder merges them and
 *   sends back, with `binder.sync` requests, what the peer lacks or has older.
 *   Binders cut off from each other converge within one round of meeting again.
 * - **Catch-up** (the ZeroMQ guide's Clone pattern): a binder that starts
 *   with peers answers lookups only once it has pulled the state of a peer
 *   that was itself caught up. Changes pushed to it meanwhile are merged as
 *   they come (last writer wins, so the order does not matter). When no peer
 *   is caught up (the whole cluster starting), it is ready once it has
 *   exchanged with, or failed to reach, every peer; and at the latest after
 *   `catchUpMs`.
 * - **Who may replicate**: see trust.ts (a key sent over this binder's own
 *   links, or an authenticated connection).
 */
import { getLogger } from "@logtape/logtape";
import { type Address, formatAddress } from "../../config/mod.ts";
import {
  CloseReason,
  type Codec,
  type ConnSettings,
  describe,
  DistError,
  type Peer,
  Redialer,
} from "../../wire/mod.ts";
import { cut, warnPeer } from "../../wire/_log.ts";
import { BUCKETS, type Cursor, type DigestSummary, isDigestSummary } from "./digest.ts";
import { paramsObject, parseRecord, toRecord } from "./records.ts";
import type { Entry, Registry } from "./registry.ts";
import { requireBinder, Trust } from "./trust.ts";
import {
  antiEntropyRound,
  chunks,
  type DiffAnswer,
  diffPage,
  type Link,
  type RoundHost,
} from "./anti_entropy.ts";

const log = getLogger(["dist", "binder"]);

/** Most records accepted in one `binder.sync`. */
const MAX_SYNC_RECORDS = 100_000;
/** Bad `binder.sync` notifications one connection may send; at this many it is closed. */
export const MAX_BAD_PUSHES = 10;
/** Least time between two "Registry full" warnings (ms). */
const FULL_WARNING_MS = 10_000;
/** Longest node id a binder.diff may name (a binder's is its name, a dot and 8 characters). */
const MAX_NODE_LENGTH = 1024;

export interface ReplicationOptions {
  registry: Registry;
  /** Other binders (this binder's own address already left out). */
  peers: Address[];
  /** This binder's id, as in its stamps: a peer answering with it is this binder. */
  node: string;
  /** Instance name told in handshakes. */
  name: string;
  codec: Codec;
  /** Settings of the connections to peers (frame limit, heartbeat, …). */
  conn: ConnSettings;
  /** Timeout of each replication call (ms). */
  timeoutMs: number;
  /** Period of anti-entropy rounds (ms). */
  intervalMs: number;
  /** Longest wait for a peer before answering from this binder's own state (ms). */
  catchUpMs: number;
}

/** Counters for `sys.stats`. */
export interface ReplicationCounters {
  /** `binder.sync` notifications sent and the records in them. */
  pushes: number;
  pushed: number;
  /** Changes not pushed to a peer because it was unreachable (anti-entropy repairs them). */
  unsent: number;
  /** Records received from peers, and those that changed this registry. */
  received: number;
  merged: number;
  /** Malformed records from peers, skipped. */
  rejected: number;
  /** `binder.sync` notifications ignored as a whole (malformed, or not from a binder). */
  bad_pushes: number;
  /** `binder.sync` refused from connections that did not prove they are one of `--peers`. */
  unproven: number;
  /** Anti-entropy rounds completed, and the records they repaired (both ways). */
  rounds: number;
  repaired: number;
}

/** Keeps this binder's registry in step with its peers'. See the module comment. */
export class Replicator {
  readonly counters: ReplicationCounters = {
    pushes: 0,
    pushed: 0,
    unsent: 0,
    received: 0,
    merged: 0,
    rejected: 0,
    bad_pushes: 0,
    unproven: 0,
    rounds: 0,
    repaired: 0,
  };
  /** Resolves once this binder may answer lookups. */
  readonly ready: Promise<void>;
  /** With --metrics: each merged change's time since its stamp (obs/timings.ts). */
  lag: { observe(seconds: number): void } | undefined;
  #isReady = false;
  #markReady!: () => void;
  #options: ReplicationOptions;
  #registry: Registry;
  #links: Link[] = [];
  #pending: Entry[] = [];
  /** Binders that dialed this one (their `binder.diff` says who they are), by connection. */
  #inbound = new Map<Peer, string>();
  #trust = new Trust();

  /** Keys of binders that dialed this one, held now (`peer_keys` in sys.stats). */
  get peerKeys(): number {
    return this.#trust.keys;
  }
  /** What an anti-entropy round needs of this replicator. */
  #host: RoundHost;
  /** Bad pushes received, by connection. */
  #badPushes = new WeakMap<Peer, number>();
  #timers: ReturnType<typeof setInterval>[] = [];
  #budget: number;
  #stopped = false;
  /** Entries skipped for want of room since the last warning, and when it was logged. */
  #fullSkipped = 0;
  #fullWarnedAt = -Infinity;

  constructor(options: ReplicationOptions) {
    this.#options = options;
    this.#registry = options.registry;
    // Pages well under the frame limit: a record's size is only estimated.
    const maxFrame = options.conn.maxFrame ?? 1024 * 1024;
    this.#budget = Math.max(4096, Math.min(256 * 1024, Math.floor(maxFrame / 4)));
    this.ready = new Promise((resolve) => this.#markReady = resolve);
    this.#host = {
      node: options.node,
      timeoutMs: options.timeoutMs,
      registry: options.registry,
      trust: this.#trust,
      merge: (records, from) => this.#mergeAll(records, from),
      budget: this.#budget,
      counted: (repaired) => {
        this.counters.rounds++;
        this.counters.repaired += repaired;
      },
      ready: (why) => this.#ready(why),
    };
    this.#registry.onChange((entry, _previous, local) => {
      if (!local || (this.#links.length === 0 && this.#inbound.size === 0)) return;
      if (this.#pending.length === 0) queueMicrotask(() => this.#push());
      this.#pending.push(entry);
    });
  }

  get isReady(): boolean {
    return this.#isReady;
  }

  /** Each peer's address and whether a connection to it is up. */
  peers(): { address: string; connected: boolean; self?: boolean }[] {
    return this.#links.map((l) => ({
      address: l.address,
      connected: l.redialer.peer !== undefined,
      ...(l.self ? { self: true } : {}),
    }));
  }

  /** Dials every peer and starts anti-entropy and the catch-up. */
  start(): void {
    const o = this.#options;
    for (const address of o.peers) {
      const link: Link = {
        address: formatAddress(address),
        exchanged: false,
        self: false,
        busy: false,
        redialer: new Redialer(address, {
          ...o.conn,
          role: "binder",
          name: o.name,
          codec: o.codec,
          timeoutMs: o.timeoutMs,
          connectTimeoutMs: o.timeoutMs,
          maxBackoffMs: 2000,
          // A connection counts as up once a round has run on it: the catch-up.
          onConnect: (peer) => antiEntropyRound(this.#host, link, peer),
          // A peer that has no link of its own to this binder pushes its changes back here.
          onNotification: (method, params, peer) => {
            if (method === "binder.sync") this.onPush(params, peer, link.address);
          },
        }),
      };
      this.#links.push(link);
    }
    if (this.#links.length === 0) {
      this.#ready("no peers");
      return;
    }
    for (const link of this.#links) link.redialer.start();
    const deadline = setTimeout(
      () => this.#ready(`no caught-up peer within ${o.catchUpMs} ms`),
      o.catchUpMs,
    );
    // Every peer tried (exchanged with, unreachable, or this binder itself): nobody to wait for.
    const poll = setInterval(() => {
      if (this.#links.every((l) => l.exchanged || l.self || l.redialer.failures > 0)) {
        this.#ready("every peer tried, none caught up");
      }
    }, 25);
    this.ready.then(() => {
      clearTimeout(deadline);
      clearInterval(poll);
    });
    this.#timers.push(
      setInterval(() => this.#antiEntropy(), o.intervalMs),
      poll as ReturnType<typeof setInterval>,
    );
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    for (const t of this.#timers) clearInterval(t);
    this.#ready("stopping");
    await Promise.all(this.#links.map((l) => l.redialer.stop()));
  }

  /**
   * Handles `binder.sync {node, records, key?}` from a peer (a push, or the
   * second half of an anti-entropy round); `conn` when it came on a
   * connection the peer dialed, which must prove the peer is one of
   * `--peers` (see the module comment).
   * @returns how many records changed this registry
   */
  onSync(params: unknown, conn?: Peer): { merged: number } {
    const p = paramsObject(params, "binder.sync");
    if (conn !== undefined) {
      try {
        this.#trust.requireProof(p.key, conn);
      } catch (err) {
        this.counters.unproven++;
        throw err;
      }
    }
    if (!Array.isArray(p.records) || p.records.length > MAX_SYNC_RECORDS) {
      throw new DistError("BAD_REQUEST", `"records" must be an array of up to ${MAX_SYNC_RECORDS}`);
    }
    return { merged: this.#mergeAll(p.records, describe(p.node)) };
  }

  /**
   * Handles a pushed `binder.sync` notification from `peer` (`from` names it
   * in logs): as onSync, if the peer is a binder. A bad push has no answer to
   * carry an error, so it is counted (`bad_pushes`) and logged within the
   * wire's budget of warnings about peers; at MAX_BAD_PUSHES from one
   * connection, that connection is closed as a protocol error.
   */
  onPush(params: unknown, peer: Peer, from = peer.remote.name): void {
    try {
      requireBinder(peer, "binder.sync");
      this.onSync(params);
    } catch (err) {
      this.badPush(err, peer, from);
    }
  }

  /** Counts and logs a bad push (see {@link onPush}); closes `peer` at MAX_BAD_PUSHES. */
  badPush(err: unknown, peer: Peer, from = peer.remote.name): void {
    // An unproven push counts too: a binder never sends one (without its
    // peer's key it leaves the change to the peer's own rounds).
    this.counters.bad_pushes++;
    const bad = (this.#badPushes.get(peer) ?? 0) + 1;
    this.#badPushes.set(peer, bad);
    const error = cut(err instanceof Error ? err.message : String(err));
    warnPeer("Ignored a bad binder.sync from {from}: {error}", { from: cut(from), error });
    if (bad >= MAX_BAD_PUSHES) {
      const closing = new DistError("BAD_REQUEST", `${bad} bad binder.sync; the last: ${error}`);
      void peer.closeWith(CloseReason.ProtocolError, closing);
    }
  }

  /**
   * Handles `binder.diff {node, digest, cursor?}` from a peer on `conn`:
   * this binder's entries where the digests differ.
   */
  onDiff(params: unknown, conn?: Peer): DiffAnswer {
    const p = paramsObject(params, "binder.diff");
    if (p.node !== undefined && (typeof p.node !== "string" || p.node.length > MAX_NODE_LENGTH)) {
      throw new DistError(
        "BAD_REQUEST",
        `"node" must be a binder's id of up to ${MAX_NODE_LENGTH} characters`,
      );
    }
    if (p.node === this.#options.node) {
      throw new DistError("BAD_REQUEST", "This binder is the caller itself", {
        data: { self: true },
      });
    }
    if (!isDigestSummary(p.digest)) {
      throw new DistError("BAD_REQUEST", `"digest" must be {x, n}, ${BUCKETS} numbers each`);
    }
    const c = p.cursor as Cursor | undefined;
    if (
      c !== undefined &&
      (c === null || typeof c !== "object" || !Number.isInteger(c.b) || c.b < 0 ||
        c.b >= BUCKETS || !Number.isInteger(c.o) || c.o < 0)
    ) {
      throw new DistError("BAD_REQUEST", `"cursor" must be {b, o}`);
    }
    // Only a well-formed request names a node or gives a key.
    if (conn !== undefined && typeof p.node === "string" && !this.#inbound.has(conn)) {
      this.#inbound.set(conn, p.node);
      conn.closed.then(() => this.#inbound.delete(conn));
    }
    if (conn !== undefined && typeof p.node === "string") this.#trust.keepKey(p.node, p.key, conn);
    const answer: DiffAnswer = {
      node: this.#options.node,
      ready: this.#isReady,
      key_hash: this.#trust.keyHash,
      ...diffPage(this.#registry, p.digest as DigestSummary, c, this.#budget),
    };
    if (conn?.identity !== undefined) answer.authenticated = true;
    return answer;
  }

  #ready(why: string): void {
    if (this.#isReady) return;
    this.#isReady = true;
    log.info("Ready to answer ({why}): {instances} instance(s) known", {
      why,
      instances: this.#registry.liveCount,
    });
    this.#markReady();
  }

  #mergeAll(records: unknown[], from: string): number {
    let merged = 0;
    const overflow = this.#registry.counters.overflow;
    for (const raw of records) {
      this.counters.received++;
      const incoming = parseRecord(raw);
      if (typeof incoming === "string") {
        if (++this.counters.rejected <= 3) {
          log.warn("Skipped a bad record from {from}: {problem}", { from, problem: incoming });
        }
        continue;
      }
      const skewed = this.#registry.counters.skewed;
      if (this.#registry.merge(incoming, from)) {
        merged++;
        this.lag?.observe((Date.now() - incoming.stamp[0]) / 1000);
      } else if (this.#registry.counters.skewed > skewed && skewed < 3) {
        log.warn("Refused a version from {from} {ms} ms ahead of this clock: check the clocks", {
          from,
          ms: incoming.stamp[0] - Date.now(),
        });
      }
    }
    this.counters.merged += merged;
    const skipped = this.#registry.counters.overflow - overflow;
    if (skipped > 0) this.#noteFull(skipped, from);
    return merged;
  }

  /** Entries from peers skipped for want of room: a warning now, then at most one every 10 s. */
  #noteFull(skipped: number, from: string): void {
    this.#fullSkipped += skipped;
    const now = performance.now();
    if (now - this.#fullWarnedAt < FULL_WARNING_MS) return;
    const registry = this.#registry;
    log.warn(
      "Registry full: skipped {skipped} new entries from peers (the last from {from}); " +
        "peers may fill {limit} of --max-instances {max}: raise it on every binder",
      { skipped: this.#fullSkipped, from, limit: registry.mergeLimit, max: registry.maxEntries },
    );
    this.#fullWarnedAt = now;
    this.#fullSkipped = 0;
  }

  /** Sends the changes made this turn to every connected peer. */
  #push(): void {
    const entries = this.#pending;
    this.#pending = [];
    if (this.#stopped) return;
    const registry = this.#registry;
    // The latest version of each entry changed (a register and a renew in one turn: one record).
    const latest = [...new Map(entries.map((e) => [e.id, registry.get(e.id) ?? e])).values()];
    for (const chunk of chunks(latest, this.#budget)) {
      const params = {
        node: this.#options.node,
        records: chunk.map((e) => toRecord(e, registry.leftMs(e))),
      };
      for (const link of this.#links) {
        const peer = link.redialer.peer;
        const key = this.#trust.proofFor(link);
        if (key === undefined && !link.self) {
          // Not proven to it yet (it has not dialed this binder): its own rounds pull the change.
          this.counters.unsent += chunk.length;
          continue;
        }
        if (
          peer !== undefined && !link.self &&
          peer.notify("binder.sync", key ? { ...params, key } : params)
        ) {
          this.counters.pushes++;
          this.counters.pushed += chunk.length;
        } else if (!link.self) {
          this.counters.unsent += chunk.length;
        }
      }
      for (const [conn, node] of this.#inbound) {
        if (this.#links.some((l) => l.node === node)) continue; // reached through our own link
        if (conn.notify("binder.sync", params)) {
          this.counters.pushes++;
          this.counters.pushed += chunk.length;
        }
      }
    }
  }

  #antiEntropy(): void {
    for (const link of this.#links) {
      const peer = link.redialer.peer;
      if (peer === undefined || link.busy || link.self) continue;
      antiEntropyRound(this.#host, link, peer).catch((err) => {
        log.debug("Anti-entropy with {peer} failed: {error}", {
          peer: link.address,
          error: cut(String(err)),
        });
      });
    }
  }
}
