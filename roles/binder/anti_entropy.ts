/**
 * Anti-entropy between binders, both sides. One round with a peer binder,
 * over the link this binder keeps to it: send the digest (`binder.diff`),
 * read the peer's entries in the buckets that differ (paged), merge them,
 * then send back with `binder.sync` what the peer lacks or holds an older
 * version of. The peer's side: {@link diffPage}.
 */
import { getLogger } from "@logtape/logtape";
import { call, DistError, type Peer, type Redialer } from "../../wire/mod.ts";
import { compareStamps, isStamp, type Stamp } from "./clock.ts";
import type { Cursor, DigestSummary } from "./digest.ts";
import { toRecord, type WireRecord } from "./records.ts";
import type { Entry, Registry } from "./registry.ts";
import { entryWeight } from "./rings.ts";
import { binderPeers } from "./peer_contract.ts";
import type { PeerProofs, Trust } from "./trust.ts";

const log = getLogger(["dist", "binder"]);

/** Most pages one anti-entropy round reads (a bound against a peer that never ends). */
const MAX_PAGES = 10_000;

/** The answer to `binder.diff`. */
export interface DiffAnswer {
  node: string;
  ready: boolean;
  buckets: number[];
  records: WireRecord[];
  next?: Cursor;
  /** The caller was authenticated (so its binder.sync needs no key). */
  authenticated?: boolean;
  /** The SHA-256 (hex) of the answering binder's key (see trust.ts). */
  key_hash?: string;
}

/** Rough JSON size of an entry's record (more fields than an instance), for paging. */
function weight(entry: Entry | undefined): number {
  return entry === undefined ? 0 : 100 + entryWeight(entry);
}

/** Splits entries into batches of about `budget` bytes at most (at least one entry each). */
export function* chunks(entries: Entry[], budget: number): Generator<Entry[]> {
  let chunk: Entry[] = [];
  let size = 0;
  for (const e of entries) {
    const w = weight(e);
    if (chunk.length > 0 && size + w > budget) {
      yield chunk;
      chunk = [];
      size = 0;
    }
    chunk.push(e);
    size += w;
  }
  if (chunk.length > 0) yield chunk;
}

/**
 * The peer's side of a round: the buckets where `digest` (the caller's)
 * differs from this registry's, and this registry's records in them from
 * `cursor` on, about `budget` bytes of them, with the cursor of the rest.
 */
export function diffPage(
  registry: Registry,
  digest: DigestSummary,
  cursor: Cursor | undefined,
  budget: number,
): Pick<DiffAnswer, "buckets" | "records" | "next"> {
  const buckets = registry.digest.differing(digest);
  const page = registry.digest.page(buckets, cursor, budget, (id) => weight(registry.get(id)));
  const records = page.ids.map((id) => {
    const entry = registry.get(id)!;
    return toRecord(entry, registry.leftMs(entry));
  });
  return page.next === undefined ? { buckets, records } : { buckets, records, next: page.next };
}

/** One peer: a connection kept up, and what we know of it. */
export interface Link extends PeerProofs {
  address: string;
  redialer: Redialer;
  /** Completed an anti-entropy round at least once. */
  exchanged: boolean;
  /** The address turned out to be this binder itself. */
  self: boolean;
  /** A round is running on it. */
  busy: boolean;
  /**
   * Tombstones sent to the peer (id → version) that it still lacked in the last round: not sent
   * again while it lacks them (it collected them, as a binder before stop 48 does after 60 s).
   */
  sentTombstones?: Map<string, string>;
}

/** What a round needs of the replicator. */
export interface RoundHost {
  /** This binder's id. */
  readonly node: string;
  /** Timeout of each call (ms). */
  readonly timeoutMs: number;
  readonly registry: Registry;
  readonly trust: Trust;
  /** Merges records from `from`; returns how many changed the registry. */
  merge(records: unknown[], from: string): number;
  /** Bytes of records per `binder.sync` (well within a frame). */
  readonly budget: number;
  /** Counts a round done and the records it repaired (both ways). */
  counted(repaired: number): void;
  /** The peer was caught up: this binder is ready to answer. */
  ready(why: string): void;
}

/** Runs one round with the peer of `link` on `peer`; see the module comment. */
export async function antiEntropyRound(host: RoundHost, link: Link, peer: Peer): Promise<void> {
  const started = performance.now();
  link.busy = true;
  try {
    const node = link.node;
    const { theirs, buckets, pulled, peerReady } = await pull(host, link, peer);
    if (link.node !== node) link.sentTombstones = undefined; // another binder, or restarted
    const sent = link.sentTombstones;
    const kept = new Map<string, string>();
    // A tombstone the peer lacked after we sent it was collected there: once is enough (r47 R11).
    const missing = lackedBy(host.registry, theirs, buckets).filter((e) => {
      if (e.removed === undefined || theirs.has(e.id)) return true;
      const v = e.stamp.join(",");
      if (sent?.get(e.id) !== v) return true;
      kept.set(e.id, v);
      return false;
    });
    // Sent back only with the peer's key (it has dialed this binder); else
    // the peer pulls them in its own rounds.
    const key = host.trust.proofFor(link);
    for (const chunk of key === undefined ? [] : chunks(missing, host.budget)) {
      const records = chunk.map((e) => toRecord(e, host.registry.leftMs(e)));
      await call(
        peer,
        binderPeers.methods.sync,
        key ? { node: host.node, key, records } : { node: host.node, records },
        { timeout: host.timeoutMs },
      );
      for (const e of chunk) if (e.removed !== undefined) kept.set(e.id, e.stamp.join(","));
    }
    link.sentTombstones = kept;
    host.counted(pulled + missing.length);
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
    if (peerReady) host.ready(`caught up from ${link.address}`);
  } finally {
    link.busy = false;
  }
}

/** Reads the peer's entries where the digests differ, page by page, merging them. */
async function pull(host: RoundHost, link: Link, peer: Peer) {
  const digest = host.registry.digest.summary();
  const theirs = new Map<string, Stamp>();
  const buckets = new Set<number>();
  let cursor: Cursor | undefined;
  let peerReady = false;
  let pulled = 0;
  for (let pages = 0; pages < MAX_PAGES; pages++) {
    const answer = await call(
      peer,
      binderPeers.methods.diff,
      { node: host.node, digest, cursor, key: host.trust.key },
      { timeout: host.timeoutMs },
    ).catch((err) => {
      if (err instanceof DistError && (err.data as { self?: boolean })?.self) {
        link.self = true;
        log.info("Peer {peer} is this binder itself: ignored", { peer: link.address });
        void link.redialer.stop();
      }
      throw err;
    });
    peerReady = answer.ready;
    if (link.node !== undefined && link.node !== answer.node) host.trust.forgetHash(link.node);
    link.node = answer.node;
    link.authenticated = answer.authenticated === true;
    link.keyHash = answer.key_hash;
    host.trust.learnHash(answer.node, answer.key_hash);
    for (const b of answer.buckets) buckets.add(b);
    for (const r of answer.records) {
      const rec = r as Partial<WireRecord> | null;
      if (typeof rec?.id === "string" && isStamp(rec.v)) theirs.set(rec.id, rec.v);
    }
    pulled += host.merge(answer.records, link.address);
    cursor = answer.next;
    if (cursor === undefined) break;
  }
  return { theirs, buckets, pulled, peerReady };
}

/** What the peer lacks, or holds an older version of, in the buckets that differed. */
function lackedBy(registry: Registry, theirs: Map<string, Stamp>, buckets: Set<number>): Entry[] {
  const ids = registry.digest.page([...buckets].sort((a, b) => a - b), undefined, Infinity).ids;
  const missing: Entry[] = [];
  for (const id of ids) {
    const entry = registry.get(id)!;
    const known = theirs.get(id);
    if (known === undefined || compareStamps(entry.stamp, known) > 0) missing.push(entry);
  }
  return missing;
}
