/**
 * Who may replicate into a binder (issue 15): changes are applied from a
 * binder this one dialed itself (the answers and pushes on its own links to
 * its `--peers`), or from a connection that proves it is one of them: each
 * binder sends a random key of its own in the `binder.diff` it sends over
 * its links, so only processes at its peers' addresses learn it, and a peer
 * puts that key in the `binder.sync` it sends back. A connection whose
 * identity a listener authenticated (`--token`, `--users`; the dispatch
 * point checks its `binder` role) needs no key. So without any security
 * setting, a local process saying "binder" in its hello can read
 * (`binder.diff`) but not write; a binder listed on one side only
 * replicates one way (to the binder that lists it).
 *
 * A node's id is no secret (every `binder.diff` answer names it), so a
 * local process can name a peer's node and give a key of its own before
 * the peer does (a binder just restarted). Each binder's answers on the
 * links to it also carry the SHA-256 of its key (`key_hash`): once a link
 * has had one, only a key with that hash is kept for that node; until
 * then a few candidates are kept and the one whose hash matches is sent.
 */
import { createHash, timingSafeEqual } from "node:crypto";
import { describe, DistError, type Peer } from "../../wire/mod.ts";

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

/** What this binder knows of a peer it dialed (see `Link` in anti_entropy.ts). */
export interface PeerProofs {
  /** The peer's id, once it has answered a round. */
  node?: string;
  /** The peer authenticated this binder (its `--token`/`--users`): no key needed. */
  authenticated?: boolean;
  /** The SHA-256 (hex) of the peer's key, from its answers (absent from an older binder). */
  keyHash?: string;
}

/** Keys one node may have given at once before its own answers say which is its (the newest stay). */
const CANDIDATES_PER_NODE = 4;

/** The hex SHA-256 of a key: what a binder's answers carry in place of the key. */
export function hashOfKey(key: string): string {
  return createHash("sha256").update(key).digest("hex");
}

/** This binder's key and the keys of the binders that dialed it; see the module comment. */
export class Trust {
  /**
   * This binder's proof key, sent only over its own links (in binder.diff):
   * a binder.sync on a connection it did not dial must carry it.
   */
  readonly key = crypto.randomUUID();
  /** The hash of {@link key}, in this binder's binder.diff answers. */
  readonly keyHash = hashOfKey(this.key);
  /**
   * Keys of the binders that dialed this one (in their binder.diff), by
   * node, oldest first: sent back in binder.sync. One per open connection.
   */
  #peerKeys = new Map<string, { key: string; hash: string; conn: Peer }[]>();
  /** Each node's key hash, from the answers on this binder's own link to it. */
  #hashes = new Map<string, string>();
  /** The node each connection named first: the only one whose key it may give. */
  #nodeOf = new WeakMap<Peer, string>();

  /** Keys held now (one at most per open connection). */
  get keys(): number {
    let n = 0;
    for (const held of this.#peerKeys.values()) n += held.length;
    return n;
  }

  /**
   * Keeps the key a binder that dialed this one sent (it is sent back in
   * binder.sync over this binder's link to it), while its connection is
   * open. Once this binder's own link to `node` has said the hash of its
   * key (see {@link learnHash}), a key without that hash is dropped.
   */
  keepKey(node: string, key: unknown, conn: Peer): void {
    if (typeof key !== "string" || key.length > 64) return;
    // One node per connection: naming a new node at each call, one connection
    // (any local process may say "binder" and read) grew this map without bound.
    const named = this.#nodeOf.get(conn);
    if (named === undefined) {
      this.#nodeOf.set(conn, node);
      // Once per connection (a peer sends its key at every round).
      conn.closed.then(() => this.#drop(node, (h) => h.conn === conn));
    } else if (named !== node) return;
    const current = this.#peerKeys.get(node) ?? [];
    if (current.some((h) => h.conn === conn && h.key === key)) return; // held already
    const hash = hashOfKey(key);
    const known = this.#hashes.get(node);
    if (known !== undefined && hash !== known) return;
    const held = current.filter((h) => h.conn !== conn && !h.conn.isClosed);
    held.push({ key, hash, conn });
    if (held.length > CANDIDATES_PER_NODE) held.splice(0, held.length - CANDIDATES_PER_NODE);
    this.#peerKeys.set(node, held);
  }

  /** Notes the key hash `node` gave on this binder's link to it; keys without it are dropped. */
  learnHash(node: string, hash: string | undefined): void {
    if (hash === undefined || this.#hashes.get(node) === hash) return;
    this.#hashes.set(node, hash);
    this.#drop(node, (h) => h.hash !== hash);
  }

  /** Forgets `node`'s hash when its link forgets it (a node's id is new at each start). */
  forgetHash(node: string): void {
    this.#hashes.delete(node);
  }

  #drop(node: string, which: (h: { hash: string; conn: Peer }) => boolean): void {
    const held = this.#peerKeys.get(node)?.filter((h) => !which(h));
    if (held === undefined) return;
    if (held.length === 0) this.#peerKeys.delete(node);
    else this.#peerKeys.set(node, held);
  }

  /**
   * What proves this binder to `peer`: its key if it has dialed this one,
   * "" if it authenticated this binder (none needed), undefined if nothing
   * does yet.
   */
  proofFor(peer: PeerProofs): string | undefined {
    if (peer.authenticated) return "";
    const held = peer.node === undefined ? undefined : this.#peerKeys.get(peer.node);
    if (held === undefined) return undefined;
    // An older binder says no hash: the key held longest, as before hashes.
    if (peer.keyHash === undefined) return held[0].key;
    return held.find((h) => h.hash === peer.keyHash)?.key;
  }

  /** @throws {DistError} UNAUTHORIZED unless `conn` is authenticated or `key` is this binder's */
  requireProof(key: unknown, conn: Peer): void {
    // On a listener that authenticates, the dispatch point checked the binder role.
    if (conn.identity !== undefined) return;
    const given = typeof key === "string" ? new TextEncoder().encode(key) : undefined;
    const mine = new TextEncoder().encode(this.key);
    if (given !== undefined && given.length === mine.length && timingSafeEqual(given, mine)) return;
    throw new DistError(
      "UNAUTHORIZED",
      "binder.sync is taken only from this binder's --peers, and this connection has not proven " +
        "it is one (with the key this binder sends its peers over its own links)",
    );
  }
}
