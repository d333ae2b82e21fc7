/**
 * How a queue group's message finds its member: how far behind each member
 * is (memberLoad, for Group.pick), and the delivery itself
 * (deliverToGroup): a delivery a member's client refuses as too large goes
 * to another member, and what members on trial take is counted against
 * their group's trial budget. The fan-out (fanout.ts) calls deliverToGroup
 * once per group a publish reaches.
 */
import type { Message, Subscription } from "./subscriber.ts";
import { knownBytes } from "./message.ts";
import { groupCounts, PICK_WINDOW, TRIAL_BURST, TRIAL_SHARE, UNFIT, UNPROVEN } from "./group.ts";
import { ON_TRIAL as TRIAL, STALLED } from "../../wire/send_queue.ts";
import { askIfDue, awaited, awaitedRank, lastStage, readLoad, stageOf } from "./group_proof.ts";
import type { Group } from "./subscriptions.ts";

/** A load past every byte count: a member whose next delivery would queue. */
const BEHIND = 2 ** 40;

/**
 * A load past BEHIND's: a member whose client's frame limit has refused a
 * delivery this large or smaller (pickBytes; hostile review 36 J4: members declaring a
 * 300-byte frame limit took their turns and lost them, 75 % of the group's
 * messages with 3). By size, not for good: one oversize message must not
 * rank a member that reads below one that never does (J13).
 */
const REFUSING = UNFIT;

/**
 * Loads past every byte count, short of a stalled socket's: a member on
 * probation (its client's kernel acknowledged some, not more than its
 * receive buffer holds: it may not read), and after it one on trial (not
 * even that), once its group's trial budget is spent. They take a message
 * only when no proven member keeps up (hostile review 38b M1).
 */
const ON_PROBATION = UNPROVEN, ON_TRIAL = 2 * UNPROVEN;

/**
 * A load past a stalled member's (STALLED, a proven one late to answer
 * included) short of BEHIND: a member not proven that leaves a request to
 * answer unanswered (group_proof.ts awaited), whatever its trial budget. A
 * group's reader late to answer under load then still takes its messages
 * (stop-47 Limits: members that never answered took 33–57 %); an honest
 * new member is asked after 16 KiB and answers within a round trip.
 */
const AWAITED = STALLED + 2 ** 38;

/**
 * Bytes pending on a member's connection that still count as nothing
 * pending (a few writes' worth): members below it share a group's messages
 * in plain rotation, whatever their socket's writes in flight.
 */
export const KEEPING_UP = 64 * 1024;

/**
 * How far behind a queue group's member is, for Group.pick: 0 while it
 * keeps up (less than KEEPING_UP pending on its connection: queued in the
 * broker plus not yet written to its socket), else those bytes, and past
 * BEHIND when a delivery now would queue instead of going out. So members
 * that keep up share the messages in rotation; when none does, the least
 * loaded of those a delivery still goes straight to takes it; and only when
 * every member is behind does one queue it (the least behind). A member
 * that stops reading takes what its socket and sink hold, then nothing
 * while another keeps up; one whose client's frame limit refused a
 * delivery, nothing as large while any other can take it; one on trial
 * (its client not yet shown to read: send_queue.ts onTrial), nothing past
 * its group's trial budget while a proven member keeps up (hostile review
 * 34 Z11: in plain rotation one that never read took half the group's
 * messages and, with `drop-oldest`, dropped them). One not proven that
 * leaves a request to answer unanswered ranks after all of these but the
 * behind (AWAITED): after a proven member late to answer.
 */
export function memberLoad(sub: Subscription, bytes: number, group?: Group<Subscription>): number {
  const sink = sub.sink;
  const held = sink.pendingBytes + sink.queued.bytes;
  // A socket with room whose client takes nothing (hostile review 36 J3), or a client that
  // leaves what it must answer unanswered (38b M1: group_proof.ts), is not keeping up.
  const pending = held + readLoad(sink, KEEPING_UP - held);
  judged = sub;
  judgedTrial = lastStage();
  if (bytes >= (sink.refusedBytes ?? Infinity)) return REFUSING + pending;
  if (!sub.ready) return BEHIND + pending;
  if (judgedTrial !== 0 && awaited(sink)) return AWAITED + awaitedRank(sink);
  if (pending >= KEEPING_UP) return pending;
  if (group === undefined) return 0;
  if (judgedTrial === 0) {
    group.proven = true;
    return 0;
  }
  // A member that has not shown it reads, with its group's trial budget spent: one on
  // probation only while the group has a proven member (else they share in plain rotation,
  // each pick stopping at the first, until one of them is proven).
  if (group.trial > 0 || (judgedTrial !== TRIAL && !group.proven)) return 0;
  return (judgedTrial === TRIAL ? ON_TRIAL : ON_PROBATION) + pending;
}

/** The member memberLoad last judged, and how far from proven (for deliverToGroup). */
let judged: Subscription | undefined;
let judgedTrial = 0;

/**
 * What a pick judges a member's fitness by (its frame or packet
 * limit): the value's known bytes with its topic's, which both go into
 * the delivery (0: unknown). A sink records a refused delivery's the same
 * way ({@link Sink.refusedBytes}).
 */
export function pickBytes(msg: Message): number {
  const bytes = knownBytes(msg);
  return bytes > 0 ? bytes + msg.topic.length : 0;
}

/**
 * What a sink records as refused (Sink.refusedBytes) when a delivery of
 * `bytes` (pickBytes) came `over` bytes past its client's limit: the size
 * from which deliveries would not fit had its frame grown with the value
 * alone, but at most halved, as encodings grow faster (escapes, UTF-8).
 * Recording `bytes` itself let a publisher whose values shrink a byte at a
 * time make every member refuse every publish again (hostile review 38b
 * M4: 64 refusals a publish, 4.3 times the broker's CPU); now a run from
 * 20,000 down to a limit of 200 costs each member about seven.
 */
export function refusedFrom(bytes: number, over: number): number {
  return Math.max(Math.ceil(bytes / 2), bytes - over + 1);
}

/**
 * Most other members one group delivery is offered to after members'
 * clients refused it (two pick windows): each refusal passes that member
 * over for deliveries as large from then on, so a group of many members
 * with small limits costs a publish at most this many refusals.
 */
const MAX_REROUTES = 2 * PICK_WINDOW;

/**
 * Gives `msg` to one member of `group` (it has members): the one its pick
 * finds. If that member's client refuses it as past its frame limit, the
 * next member that can take it gets it instead (hostile review 38 L4:
 * members whose MQTT Maximum Packet Size was just under the group's
 * packets took their turns and lost every message). What a member on
 * trial is given comes out of the group's trial budget; a share of what a
 * proven one is given goes back into it (hostile review 38 L6).
 */
export function deliverToGroup(group: Group<Subscription>, msg: Message): void {
  const bytes = pickBytes(msg);
  let load = memberLoad;
  let member = group.pick(load, bytes);
  if (member.sink.names?.(msg.topic) === false) {
    // A topic its protocol has no name for (MQTT: `/t/a#b`): a member that has one takes it.
    load = namingLoad(msg.topic);
    member = group.pick(load, bytes);
  }
  for (let tries = 0;;) {
    const sink = member.sink, before = sink.refusedBytes;
    member.deliver(msg);
    if (sink.refusedBytes === before || ++tries > MAX_REROUTES) break;
    if (group.members.length === 0) return; // cut off meanwhile
    member = group.pick(load, bytes);
    // Every member left has refused as large a delivery: it is lost (each refusal counted).
    if (bytes >= (member.sink.refusedBytes ?? Infinity)) return;
    groupCounts.rerouted++;
  }
  askIfDue(member.sink);
  // Its frame's head, roughly (and something for a value sized unknown). Given with the budget
  // spent, it was what no proven member could take straight away: no debt.
  const cost = bytes + 64;
  if (group.members.length === 1) return; // a lone member: no pick, nothing to share
  if ((member === judged ? judgedTrial : stageOf(member.sink)) > 0) {
    if (group.trial > 0) {
      group.trial -= cost;
      spent.set(member, (spent.get(member) ?? 0) + cost);
    } else group.proven = false; // the pick found no proven member that keeps up
  } else if (group.trial < TRIAL_BURST) {
    // A member proven since gives back what its trial cost: the budget covers as many members
    // joining at once as prove themselves, while members that never do only spend it.
    const back = spent.get(member);
    if (back !== undefined) spent.delete(member);
    group.trial = Math.min(TRIAL_BURST, group.trial + (back ?? 0) + cost / TRIAL_SHARE);
  }
}

/**
 * memberLoad, with a member whose sink has no name for `topic` (Sink.names)
 * past every other (UNFIT: a pick looks past its window for one that has):
 * hostile46b M-B6, in a group of native and MQTT members a native topic
 * with no MQTT name given to an MQTT member was lost (counted), one pick in
 * two. With no member that has one, it goes where it would have (counted).
 */
function namingLoad(topic: string): typeof memberLoad {
  return (sub, bytes, group) =>
    (sub.sink.names?.(topic) === false ? UNFIT : 0) + memberLoad(sub, bytes, group);
}

/** What each member on trial was given from its group's trial budget, until it is proven. */
const spent = new WeakMap<Subscription, number>();
