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
import { askIfDue as ask, type ReadProof, unanswered } from "../../wire/read_proof.ts";
import type { Sink } from "./message.ts";

export { ASK_AGAIN_MS, type ReadProof } from "../../wire/read_proof.ts";

/**
 * Output given past a proven member's last answer, with a request left
 * unanswered STALL_MS, after which it is stalled: a probe interval and a
 * member's "keeping up" (64 KiB) besides.
 */
const UNREAD_BYTES = 128 * 1024;
/** How long a proven member may leave a request unanswered before it counts as stalled. */
const STALL_MS = 25;

/**
 * Sends `sink`'s client a request to answer, behind what it was given,
 * when enough went out on its connection since the last one and none is
 * on its way (wire/read_proof.ts askIfDue). Called after each group delivery.
 */
export function askIfDue(sink: Sink): void {
  const askRead = sink.askRead, socket = sink.socket;
  if (askRead === undefined || socket === undefined) return;
  ask(sink, socket, sink.pendingBytes, (nonce, answered) => askRead.call(sink, nonce, answered));
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
  const bytesOut = sink.socket!.bytesOut;
  if (!unanswered(p, bytesOut, UNREAD_BYTES, STALL_MS)) return kernel;
  // After members that answer; among such members the least unread first, so that members all
  // behind one client that reads them in turn (a benchmark's) still share in turn.
  const app = STALLED + Math.min(bytesOut - p.read, 2 ** 38);
  return app > kernel ? app : kernel;
}

/**
 * Whether `sink`'s client, not proven to read, leaves a request unanswered
 * (one asked behind what it was given) past STALL_MS: a queue group then ranks it after
 * every member that answers, a proven one late to answer included
 * (group_delivery.ts memberLoad). Ranked by its stage, members that never
 * answered took their group's messages whenever its reader was late to
 * answer under load (past STALL_MS): two with 8 MB receive buffers took 55
 * % of the group (stop-47 Limits). Absent where nothing can be asked.
 */
export function awaited(sink: Sink): boolean {
  const p = sink.proof;
  return sink.askRead !== undefined && p !== undefined && p.side === sink.socket &&
    !p.proven && p.asked >= 0 && turnClock() - p.askedAt >= STALL_MS;
}

/**
 * How a member {@link awaited} ranks among such members (0 to 2^38): one
 * that answered before first (a reader not proven yet, late to answer),
 * then the one given least past what it has shown read (the most room).
 */
export function awaitedRank(sink: Sink): number {
  const read = sink.proof!.read, out = sink.socket?.bytesOut ?? 0;
  return (read > 0 ? 0 : 2 ** 37) + Math.min(Math.max(0, out - read), 2 ** 36);
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
