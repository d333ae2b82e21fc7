/** The limits of the shares (shares.ts explains each rule), in one place. */

/** Requests one client connection may have on the backends while others are active. */
export const CONTENDED_SHARE = 16;
/** How long a connection counts as active after its last request (ms). */
export const ACTIVE_MS = 1000;
/** Shares a connection may hold (on the backends and waiting) before it is a bulk flow. */
export const BULK_DEPTH = 4;
/** Shares the connections of one source may have on the backends while another source is busy. */
export const SOURCE_OUT = 2;
/** Shares the connections of one source may hold before they are bulk flows (another busy). */
export const SOURCE_DEPTH = BULK_DEPTH + 1;
/** Requests of other connections sent for each one of bulk flows, while those are busy. */
export const LIGHT_PER_BULK = 8;
/** Most bulk requests that others' may have earned ahead (a burst of bulk beside them). */
export const MAX_CREDIT = 2;
/**
 * How long after a request of a connection that is not a bulk flow was
 * answered bulk flows still yield (ms): a client has nothing on the backends
 * between an answer and its next request, longer when its machine is busy.
 */
export const LIGHT_GRACE_MS = 50;
/**
 * How long after a small request was answered large ones are still paced
 * (ms): longer than LIGHT_GRACE_MS, as one hiccup of a small client's
 * (a loaded machine) let large requests fill every backend's connection,
 * and its next request then waited behind them, and so on (hostile32 X5).
 */
export const LARGE_GRACE_MS = 500;
/** Bytes of requests one connection may have on the backends while others are active. */
export const SHARE_BYTES = 64 * 1024;
/** Requests of at least this many bytes are large (they hold a backend's connection a while). */
export const LARGE_BYTES = 32 * 1024;
/**
 * Bytes of large requests each other request sent earns them while small
 * ones are busy: about what a small request costs the balancer, in bytes
 * moved (each byte is scanned and copied a few times on its way through).
 */
export const SMALL_EARNS = 4 * 1024;
/**
 * Requests of at least this many bytes are paced (they pay their bytes from
 * what smaller ones earn, SMALL_EARNS each) and keep off one backend while
 * small ones come: a request smaller than this costs about what any small
 * one does; one larger, its bytes (hostile33 Y1: 32,700-byte requests, just
 * under LARGE_BYTES, went unpaced).
 */
export const PACED_BYTES = SMALL_EARNS;
/**
 * Bytes of requests of every size on the backends, per backend in rotation,
 * past which a connection adds only up to its part (pacing.ts): what a small
 * request may find ahead of it on a backend's connection (hostile35 H12).
 */
export const BACKEND_BYTES = 64 * 1024;
/**
 * Bytes a client's socket may hold that its peer has not acknowledged
 * before the client counts as leaving its answers unread, once its peer
 * has acknowledged nothing for a while too (wire's stalledLoad): then its
 * bulk flow gets no allowance (allowance.ts). On loopback a reader
 * acknowledges what arrives at once; one that never reads leaves all past
 * its receive buffer (about 120 KB) here.
 */
export const UNREAD_BYTES = 64 * 1024;
/** Bytes of requests the connections of one source may have on the backends while another source is busy. */
export const SOURCE_BYTES = SOURCE_OUT * SHARE_BYTES;
/**
 * How long after a small request was answered paced requests still keep
 * off one backend (ms): longer than LARGE_GRACE_MS, so a client between
 * requests (20 a second, or one) finds a backend with nothing large ahead
 * of it when it comes back (hostile33 Y2).
 */
export const CLEAR_MS = 10_000;
/** Most bytes large requests may have earned ahead; and sizes are counted up to this. */
export const MAX_EARNED = 1024 * 1024;

/** What `Shares.admit` allows a waiting request. */
export enum Admit {
  /** Not now: its connection has its share, or bulk flows have theirs. */
  No,
  /** As a request of a connection that is not a bulk flow. */
  Light,
  /** As a request of a bulk flow (counted against the bulk flows' allowance). */
  Bulk,
}
