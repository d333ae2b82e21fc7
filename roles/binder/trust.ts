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
 */
import { timingSafeEqual } from "node:crypto";
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
}

/** This binder's key and the keys of the binders that dialed it; see the module comment. */
export class Trust {
  /**
   * This binder's proof key, sent only over its own links (in binder.diff):
   * a binder.sync on a connection it did not dial must carry it.
   */
  readonly key = crypto.randomUUID();
  /** Keys of the binders that dialed this one (in their binder.diff), by node: sent back in binder.sync. */
  #peerKeys = new Map<string, { key: string; conn: Peer }>();
  /** The node each connection named first: the only one whose key it may give. */
  #nodeOf = new WeakMap<Peer, string>();

  /** Keys held now (one at most per open connection). */
  get keys(): number {
    return this.#peerKeys.size;
  }

  /**
   * Keeps the key a binder that dialed this one sent (it is sent back in
   * binder.sync over this binder's link to it). The first connection to
   * give a node's key holds it while open: a node id is random per start,
   * so a process cannot claim one before the binder itself has.
   */
  keepKey(node: string, key: unknown, conn: Peer): void {
    if (typeof key !== "string" || key.length > 64) return;
    // One node per connection: naming a new node at each call, one connection
    // (any local process may say "binder" and read) grew this map without bound.
    const named = this.#nodeOf.get(conn);
    if (named === undefined) this.#nodeOf.set(conn, node);
    else if (named !== node) return;
    const held = this.#peerKeys.get(node);
    if (held !== undefined && !held.conn.isClosed) return;
    this.#peerKeys.set(node, { key, conn });
    conn.closed.then(() => {
      if (this.#peerKeys.get(node)?.conn === conn) this.#peerKeys.delete(node);
    });
  }

  /**
   * What proves this binder to `peer`: its key if it has dialed this one,
   * "" if it authenticated this binder (none needed), undefined if nothing
   * does yet.
   */
  proofFor(peer: PeerProofs): string | undefined {
    if (peer.authenticated) return "";
    return peer.node === undefined ? undefined : this.#peerKeys.get(peer.node)?.key;
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
