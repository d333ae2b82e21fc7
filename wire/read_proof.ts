/**
 * Whether a connection's client reads what it is given, by its answers
 * (hostile review 38b M1, 39a P2): the kernel's count of bytes its peer
 * acknowledged (send_queue.ts) says what reached the client's receive
 * buffer, which a client sets as large as it likes (8 MB here with
 * SO_RCVBUF, more from another host, with SO_RCVBUFFORCE or a TCP stack of
 * its own). Behind what a connection was given, this side sends something
 * its client must answer and cannot answer unread: a request whose id is a
 * random 52-bit nonce (the dist protocol: every peer answers a request, if
 * only with UNKNOWN_METHOD; {@link askPeer}), or a WebSocket ping with the
 * nonce as its payload (the pong echoes it). TCP keeps order, so an answer
 * says that the client read every byte before it.
 *
 * Used by a broker's queue groups (roles/broker/group_proof.ts: who is a
 * member that reads) and a balancer's bulk allowance
 * (roles/balancer/pressure.ts: who is a bulk flow that reads).
 */
import { DistError } from "./errors.ts";
import type { Peer } from "./peer.ts";
import { turnClock } from "./send_queue.ts";

/** What a connection's client has shown by its answers. */
export interface ReadProof {
  /** The connection's output it is about (an MQTT session outlives its connections). */
  side: object;
  /** Position in the connection's output (bytes) up to which its client has shown it read. */
  read: number;
  /** Position the request on its way ends at (-1: none), and when it was sent (turn clock). */
  asked: number;
  askedAt: number;
  /** Whether an answer showed PROOF_BYTES read. */
  proven: boolean;
}

/** Something that keeps a connection's proof. */
export interface ProofHolder {
  proof?: ReadProof;
}

/**
 * Bytes of a connection's output its client must be shown to have read to
 * be proven (64 KiB): every byte of it, not what its kernel buffered, so
 * that much says it reads.
 */
export const PROOF_BYTES = 64 * 1024;
/** Output between two requests to answer: every 16 KiB on trial (proven quickly), then 64 KiB. */
const ASK_TRIAL_BYTES = 16 * 1024, ASK_BYTES = 64 * 1024;
/** After this long unanswered a request is asked again (the first's answer still counts). */
export const ASK_AGAIN_MS = 10_000;

/**
 * Sends a request to answer under `nonce`, behind what was given: returns
 * where the connection's output (as `bytesOut` counts it) ends behind it,
 * or -1 when nothing was sent; calls `answered` once its client answers.
 */
export type Ask = (nonce: number, answered: () => void) => number;

/** Random words for nonces, drawn 128 nonces at a time. */
const randoms = new Uint32Array(256);
let drawn = randoms.length;

/** A nonce: a safe integer in [2^52, 2^53), past any id a peer's own sequence reaches. */
export function nonce(): number {
  if (drawn >= randoms.length) {
    crypto.getRandomValues(randoms);
    drawn = 0;
  }
  const high = randoms[drawn++] & 0xfffff, low = randoms[drawn++];
  return 2 ** 52 + high * 2 ** 32 + low;
}

/**
 * Asks `peer`'s client `sys.ping` under the id `nonce` (an {@link Ask}):
 * any answer carrying it, UNKNOWN_METHOD included, says it read what was
 * before.
 */
export function askPeer(peer: Peer, id: number, answered: () => void): number {
  const heard = (err?: unknown) => {
    const code = err instanceof DistError ? err.code : "";
    if (code !== "TIMEOUT" && code !== "UNAVAILABLE") answered();
  };
  peer.call("sys.ping", undefined, { id, timeout: ASK_AGAIN_MS }).then(() => heard(), heard);
  const conn = peer.conn;
  return conn.bytesOut + conn.pendingBytes;
}

/**
 * Sends the client of `side` (`holder` keeps its proof; `pending`: its
 * output not written yet) a request to answer by `ask`, behind what it was
 * given, when ASK_TRIAL_BYTES (proven: ASK_BYTES) went out since the last
 * one and none is on its way. Returns its proof (a new one when the side
 * changed).
 */
export function askIfDue(
  holder: ProofHolder,
  side: { readonly bytesOut: number },
  pending: number,
  ask: Ask,
): ReadProof {
  let p = holder.proof;
  if (p?.side !== side) {
    p = holder.proof = { side, read: 0, asked: -1, askedAt: 0, proven: false };
  }
  const proof = p;
  if (p.asked >= 0 && turnClock() - p.askedAt < ASK_AGAIN_MS) return p;
  const last = p.asked >= 0 ? p.asked : p.read;
  if (side.bytesOut + pending - last < (p.proven ? ASK_BYTES : ASK_TRIAL_BYTES)) return p;
  const at = ask(nonce(), () => answered(proof, at));
  if (at < 0) return p;
  p.asked = at;
  p.askedAt = turnClock();
  return p;
}

/** Its client answered the request that ended at `at`: it read that far. */
function answered(p: ReadProof, at: number): void {
  if (at > p.read) p.read = at;
  if (at >= p.asked) p.asked = -1;
  if (p.read >= PROOF_BYTES) p.proven = true;
}

/**
 * Whether the client of `p`'s side leaves a request unanswered: one has
 * been on its way `stallMs` or more, and it was given `past` bytes or more
 * (`bytesOut`: its side's output written) past its last answer.
 */
export function unanswered(p: ReadProof, bytesOut: number, past: number, stallMs: number): boolean {
  return p.asked >= 0 && bytesOut - p.read >= past && turnClock() - p.askedAt >= stallMs;
}
