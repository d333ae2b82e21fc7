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
 * - **Who may replicate** (issue 15): changes are applied from a binder
 *   this one dialed itself (the answers and pushes on its own links to its
 *   `--peers`), or from a connection that proves it is one of them: each
 *   binder sends a random key of its own in the `binder.diff` it sends
 *   over its links, so only processes at its peers' addresses learn it,
 *   and a peer puts that key in the `binder.sync` it sends back. A
 *   connection whose identity a listener authenticated (`--token`,
 *   `--users`; the dispatch point checks its `binder` role) needs no key.
 *   So without any security setting, a local process saying "binder" in
 *   its hello can read (`binder.diff`) but not write; a binder listed on
 *   one side only replicates one way (to the binder that lists it).
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
import { timingSafeEqual } from "node:crypto";
import { compareStamps, isStamp, type Stamp } from "./clock.ts";
import { BUCKETS, type Cursor, type DigestSummary, isDigestSummary } from "./digest.ts";
import { paramsObject, parseRecord, toRecord, type WireRecord } from "./records.ts";
import { type Entry, entryWeight, type Registry } from "./registry.ts";

const log = getLogger(["dist", "binder"]);

/** Most pages one anti-entropy round reads (a bound against a peer that never ends). */
const MAX_PAGES = 10_000;
/** Most records accepted in one `binder.sync`. */
const MAX_SYNC_RECORDS = 100_000;
/** Bad `binder.sync` notifications one connection may send; at this many it is closed. */
export const MAX_BAD_PUSHES = 10;
/** Least time between two "Registry full" warnings (ms). */
const FULL_WARNING_MS = 10_000;

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

/** One peer: a connection kept up, and what we know of it. */
interface Link {
  address: string;
  redialer: Redialer;
  /** Completed an anti-entropy round at least once. */
  exchanged: boolean;
  /** The address turned out to be this binder itself. */
  self: boolean;
  /** A round is running on it. */
  busy: boolean;
  /** The peer's id, once it has answered a round. */
  node?: string;
  /** The peer authenticated this binder (its `--token`/`--users`): no key needed. */
  authenticated?: boolean;
}

/** The answer to `binder.diff`. */
interface DiffAnswer {
  node: string;
  ready: boolean;
  buckets: number[];
  records: WireRecord[];
  next?: Cursor;
  /** The caller was authenticated (so its binder.sync needs no key). */
  authenticated?: boolean;
}

/** Rough JSON size of an entry's record (more fields than an instance), for paging. */
function weight(entry: Entry | undefined): number {
  return entry === undefined ? 0 : 100 + entryWeight(entry);
}

/**
 * Refuses a replication method to a connection that did not say it is a
 * binder in its handshake. Not authentication (anyone can say so), but a
 * client, a server or a balancer cannot replicate by accident or on a whim.
 * @throws {DistError} UNAUTHORIZED
 */
export function requireBinder(peer: Peer, method: string): void {
  if (peer.remote.role !== "binder") {
    throw new DistError(
      "UNAUTHORIZED",
      `${method} is for binders (handshake role "binder"), not ${describe(peer.remote.role, 40)}`,
    );
  }
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
  #isReady = false;
  #markReady!: () => void;
  #options: ReplicationOptions;
  #registry: Registry;
  #links: Link[] = [];
  #pending: Entry[] = [];
  /** Binders that dialed this one (their `binder.diff` says who they are), by connection. */
  #inbound = new Map<Peer, string>();
  /**
   * This binder's proof key, sent only over its own links (in binder.diff):
   * a binder.sync on a connection it did not dial must carry it.
   */
  #key = crypto.randomUUID();
  /** Keys of the binders that dialed this one (in their binder.diff), by node: sent back in binder.sync. */
  #peerKeys = new Map<string, { key: string; conn: Peer }>();
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
          onConnect: (peer) => this.#round(link, peer),
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
    if (conn !== undefined) this.#requireProof(p, conn);
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
    if (p.node === this.#options.node) {
      throw new DistError("BAD_REQUEST", "This binder is the caller itself", {
        data: { self: true },
      });
    }
    if (conn !== undefined && typeof p.node === "string" && !this.#inbound.has(conn)) {
      this.#inbound.set(conn, p.node);
      conn.closed.then(() => this.#inbound.delete(conn));
    }
    if (conn !== undefined && typeof p.node === "string") this.#keepKey(p.node, p.key, conn);
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
    const registry = this.#registry;
    const buckets = registry.digest.differing(p.digest as DigestSummary);
    const page = registry.digest.page(buckets, c, this.#budget, (id) => weight(registry.get(id)));
    const answer: DiffAnswer = {
      node: this.#options.node,
      ready: this.#isReady,
      buckets,
      records: page.ids.map((id) => {
        const entry = registry.get(id)!;
        return toRecord(entry, registry.leftMs(entry));
      }),
    };
    if (page.next !== undefined) answer.next = page.next;
    if (conn?.identity !== undefined) answer.authenticated = true;
    return answer;
  }

  /**
   * Keeps the key a binder that dialed this one sent (it is sent back in
   * binder.sync over this binder's link to it). The first connection to
   * give a node's key holds it while open: a node id is random per start,
   * so a process cannot claim one before the binder itself has.
   */
  #keepKey(node: string, key: unknown, conn: Peer): void {
    if (typeof key !== "string" || key.length > 64) return;
    const held = this.#peerKeys.get(node);
    if (held !== undefined && !held.conn.isClosed) return;
    this.#peerKeys.set(node, { key, conn });
    conn.closed.then(() => {
      if (this.#peerKeys.get(node)?.conn === conn) this.#peerKeys.delete(node);
    });
  }

  /**
   * What proves this binder to the peer of `link`: its key if it has dialed
   * this one, "" if it authenticated this binder (none needed), undefined
   * if nothing does yet.
   */
  #proofFor(link: Link): string | undefined {
    if (link.authenticated) return "";
    return link.node === undefined ? undefined : this.#peerKeys.get(link.node)?.key;
  }

  /** @throws {DistError} UNAUTHORIZED unless `conn` is authenticated or `p.key` is this binder's */
  #requireProof(p: Record<string, unknown>, conn: Peer): void {
    // On a listener that authenticates, the dispatch point checked the binder role.
    if (conn.identity !== undefined) return;
    const key = typeof p.key === "string" ? new TextEncoder().encode(p.key) : undefined;
    const mine = new TextEncoder().encode(this.#key);
    if (key !== undefined && key.length === mine.length && timingSafeEqual(key, mine)) return;
    this.counters.unproven++;
    throw new DistError(
      "UNAUTHORIZED",
      "binder.sync is taken only from this binder's --peers, and this connection has not proven " +
        "it is one (with the key this binder sends its peers over its own links)",
    );
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
      if (this.#registry.merge(incoming)) merged++;
      else if (this.#registry.counters.skewed > skewed && skewed < 3) {
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
    for (const chunk of this.#chunks(latest)) {
      const params = {
        node: this.#options.node,
        records: chunk.map((e) => toRecord(e, registry.leftMs(e))),
      };
      for (const link of this.#links) {
        const peer = link.redialer.peer;
        const key = this.#proofFor(link);
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

  /** Splits entries into batches that fit well within a frame. */
  *#chunks(entries: Entry[]): Generator<Entry[]> {
    let chunk: Entry[] = [];
    let size = 0;
    for (const e of entries) {
      const w = weight(e);
      if (chunk.length > 0 && size + w > this.#budget) {
        yield chunk;
        chunk = [];
        size = 0;
      }
      chunk.push(e);
      size += w;
    }
    if (chunk.length > 0) yield chunk;
  }

  #antiEntropy(): void {
    for (const link of this.#links) {
      const peer = link.redialer.peer;
      if (peer === undefined || link.busy || link.self) continue;
      this.#round(link, peer).catch((err) => {
        log.debug("Anti-entropy with {peer} failed: {error}", {
          peer: link.address,
          error: cut(String(err)),
        });
      });
    }
  }

  /**
   * One anti-entropy round with a peer: pull its entries where the digests
   * differ, merge them, push back what it lacks or has older.
   */
  async #round(link: Link, peer: Peer): Promise<void> {
    const o = this.#options;
    const registry = this.#registry;
    const started = performance.now();
    link.busy = true;
    try {
      const digest = registry.digest.summary();
      const theirs = new Map<string, Stamp>();
      const buckets = new Set<number>();
      let cursor: Cursor | undefined;
      let peerReady = false;
      let pulled = 0;
      for (let pages = 0; pages < MAX_PAGES; pages++) {
        let answer: DiffAnswer;
        try {
          answer = await peer.call(
            "binder.diff",
            { node: o.node, digest, cursor, key: this.#key },
            {
              timeout: o.timeoutMs,
            },
          ) as DiffAnswer;
        } catch (err) {
          if (err instanceof DistError && (err.data as { self?: boolean })?.self) {
            link.self = true;
            log.info("Peer {peer} is this binder itself: ignored", { peer: link.address });
            void link.redialer.stop();
          }
          throw err;
        }
        if (answer === null || typeof answer !== "object" || !Array.isArray(answer.records)) {
          throw new DistError("BAD_REQUEST", `Malformed binder.diff answer from ${link.address}`);
        }
        peerReady = answer.ready === true;
        if (typeof answer.node === "string") link.node = answer.node;
        link.authenticated = answer.authenticated === true;
        for (const b of Array.isArray(answer.buckets) ? answer.buckets : []) {
          if (Number.isInteger(b) && b >= 0 && b < BUCKETS) buckets.add(b);
        }
        for (const r of answer.records) {
          const rec = r as Partial<WireRecord>;
          if (typeof rec?.id === "string" && isStamp(rec.v)) theirs.set(rec.id, rec.v);
        }
        pulled += this.#mergeAll(answer.records, link.address);
        cursor = answer.next;
        if (cursor === undefined) break;
      }
      // What the peer lacks, or holds an older version of, in the buckets that differed.
      const ids = registry.digest.page([...buckets].sort((a, b) => a - b), undefined, Infinity).ids;
      const missing: Entry[] = [];
      for (const id of ids) {
        const entry = registry.get(id)!;
        const known = theirs.get(id);
        if (known === undefined || compareStamps(entry.stamp, known) > 0) missing.push(entry);
      }
      // Sent back only with the peer's key (it has dialed this binder); else
      // the peer pulls them in its own rounds.
      const key = this.#proofFor(link);
      for (const chunk of key === undefined ? [] : this.#chunks(missing)) {
        const records = chunk.map((e) => toRecord(e, registry.leftMs(e)));
        await peer.call(
          "binder.sync",
          key ? { node: o.node, key, records } : { node: o.node, records },
          {
            timeout: o.timeoutMs,
          },
        );
      }
      this.counters.rounds++;
      this.counters.repaired += pulled + missing.length;
      const first = !link.exchanged;
      link.exchanged = true;
      if (first || pulled + missing.length > 0) {
        log.info("Anti-entropy with {peer}: pulled {pulled}, sent {sent} in {ms} ms", {
          peer: link.address,
          pulled,
          sent: missing.length,
          ms: Math.round(performance.now() - started),
        });
      }
      if (peerReady) this.#ready(`caught up from ${link.address}`);
    } finally {
      link.busy = false;
    }
  }
}
