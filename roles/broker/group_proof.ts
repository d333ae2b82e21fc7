/**
 * Whether a queue group member's client reads what it is given, by its
 * answers (hostile review 38b M1): the kernel's count of bytes its peer
 * acknowledged (wire/send_queue.ts) says what reached the client's receive
 * buffer, which a client sets as large as it likes (8 MB here with
 * SO_RCVBUF, more from another host, with SO_RCVBUFFORCE or a TCP stack of
 * its own, or after reading something else first): ten members that never
 * read took 84 % of a group. Behind a member's deliveries the broker sends
 * something its client must answer and cannot answer unread: a request
 * whose id is a random 52-bit nonce (the dist protocol: every peer answers
 * a request, if only with UNKNOWN_METHOD), or a WebSocket ping with the
 * nonce as its payload (MQTT over WebSocket: the pong echoes it). TCP keeps
 * order, so an answer says that the client read every byte before it.
 *
 * A member whose client can be asked ({@link Sink.askRead}) is proven only
 * by an answer behind PROOF_BYTES of its connection (the kernel's count
 * then only tells trial from probation), and once proven it is stalled as
 * a socket is (STALLED) when it was given UNREAD_BYTES past its last
 * answer and left a request unanswered for STALL_MS: so a member that read
 * to be proven and then stops takes what a few tens of milliseconds of its
 * turns bring, not its receive buffer. Where nothing can be asked (MQTT
 * over TCP: its QoS 0 has no answer at all, and the packet ids a QoS 1
 * PUBACK echoes are guessable), the kernel's count alone, as before.
 */
import { lastTrial, ON_PROBATION, ON_TRIAL, stalledLoad, trialOf } from "../../wire/send_queue.ts";
import { STALLED, turnClock } from "../../wire/send_queue.ts";
import type { Sink } from "./message.ts";

/** What a member's client has shown by its answers; kept on its sink ({@link Sink.proof}). */
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

/**
 * Bytes of a connection's output its client must be shown to have read to
 * be proven (64 KiB): every byte of it, not what its kernel buffered, so
 * that much says it reads; the group's trial budget (1 MiB) then covers
 * sixteen members joining at once.
 */
export const PROOF_BYTES = 64 * 1024;
/** Output between two requests to answer: every 16 KiB on trial (proven quickly), then 64 KiB. */
const ASK_TRIAL_BYTES = 16 * 1024, ASK_BYTES = 64 * 1024;
/**
 * Output given past a proven member's last answer, with a request left
 * unanswered STALL_MS, after which it is stalled: a probe interval and a
 * member's "keeping up" (64 KiB) besides.
 */
const UNREAD_BYTES = 128 * 1024;
/** How long a proven member may leave a request unanswered before it counts as stalled. */
const STALL_MS = 25;
/** After this long unanswered a request is asked again (the first's answer still counts). */
export const ASK_AGAIN_MS = 10_000;

/** Random words for nonces, drawn 128 nonces at a time. */
const randoms = new Uint32Array(256);
let drawn = randoms.length;

/** A nonce: a safe integer in [2^52, 2^53), past any id a peer's own sequence reaches. */
function nonce(): number {
  if (drawn >= randoms.length) {
    crypto.getRandomValues(randoms);
    drawn = 0;
  }
  const high = randoms[drawn++] & 0xfffff, low = randoms[drawn++];
  return 2 ** 52 + high * 2 ** 32 + low;
}

/**
 * Sends `sink`'s client a request to answer, behind what it was given,
 * when ASK_TRIAL_BYTES (proven: ASK_BYTES) went out on its connection since
 * the last one and none is on its way. Called after each group delivery.
 */
export function askIfDue(sink: Sink): void {
  const ask = sink.askRead, socket = sink.socket;
  if (ask === undefined || socket === undefined) return;
  let p = sink.proof;
  if (p?.side !== socket) {
    p = sink.proof = { side: socket, read: 0, asked: -1, askedAt: 0, proven: false };
  }
  if (p.asked >= 0 && turnClock() - p.askedAt < ASK_AGAIN_MS) return;
  const last = p.asked >= 0 ? p.asked : p.read;
  if (socket.bytesOut + sink.pendingBytes - last < (p.proven ? ASK_BYTES : ASK_TRIAL_BYTES)) return;
  const at = ask.call(sink, nonce(), () => answered(p, at));
  if (at < 0) return;
  p.asked = at;
  p.askedAt = turnClock();
}

/** Its client answered the request that ended at `at`: it read that far. */
function answered(p: ReadProof, at: number): void {
  if (at > p.read) p.read = at;
  if (at >= p.asked) p.asked = -1;
  if (p.read >= PROOF_BYTES) p.proven = true;
}

/** How far the member readLoad last judged is from proven (ON_TRIAL, ON_PROBATION, 0). */
let stage = 0;

/**
 * What a member's reading adds to its load past the `past` bytes a
 * member that keeps up may hold: STALLED and more while its socket's peer
 * acknowledges nothing (send_queue.ts stalledLoad), or while its proven
 * client leaves a request unanswered past STALL_MS with UNREAD_BYTES given
 * since its last answer; else 0. Sets what {@link lastStage} says.
 */
export function readLoad(sink: Sink, past: number): number {
  const kernel = stalledLoad(sink.socket, past);
  stage = lastTrial();
  if (sink.askRead === undefined) return kernel;
  const p = sink.proof;
  if (p === undefined || !p.proven || p.side !== sink.socket) {
    stage = unprovenStage(p, stage);
    return kernel;
  }
  stage = 0;
  const unread = sink.socket!.bytesOut - p.read;
  if (p.asked < 0 || unread < UNREAD_BYTES) return kernel;
  if (turnClock() - p.askedAt < STALL_MS) return kernel;
  // After members that answer; among such members the least unread first, so that members all
  // behind one client that reads them in turn (a benchmark's) still share in turn.
  const app = STALLED + Math.min(unread, 2 ** 38);
  return app > kernel ? app : kernel;
}

/** How far the client of the member readLoad last judged is from proven, as {@link stageOf}. */
export function lastStage(): number {
  return stage;
}

/**
 * How far `sink`'s client is from proven: ON_TRIAL, ON_PROBATION or 0, by
 * its answers where it can be asked (never more than on probation without
 * one), else by its kernel's count (send_queue.ts trialOf).
 */
export function stageOf(sink: Sink): number {
  if (sink.askRead === undefined) return trialOf(sink.socket);
  const p = sink.proof;
  if (p?.proven && p.side === sink.socket) return 0;
  return unprovenStage(p, trialOf(sink.socket));
}

/**
 * The stage of a member that can be asked and is not proven, given its
 * kernel's (`kernel`): on probation at most, whatever its kernel
 * acknowledged, and on trial while it leaves a request unanswered past
 * STALL_MS (it takes a group's messages only after members that answer
 * them: ten that never answered took 21 % of a new reader's group on
 * probation, where its kernel's 8 MB put them).
 */
function unprovenStage(p: ReadProof | undefined, kernel: number): number {
  if (kernel === ON_TRIAL) return ON_TRIAL;
  if (p !== undefined && p.asked >= 0 && turnClock() - p.askedAt >= STALL_MS) return ON_TRIAL;
  return ON_PROBATION;
}
