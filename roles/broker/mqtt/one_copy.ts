/**
 * One copy of a publish per MQTT session, however many of its
 * subscriptions match (MQTT-3.3.5-1 for 3.1.1, MQTT-3.3.4-2 for MQTT 5):
 * at the highest QoS they were granted, and (MQTT 5) carrying the
 * Subscription Identifier of each (MQTT-3.3.4-4, their order not
 * significant). Before, each overlapping subscription had a copy of its
 * own, and under `--data-dir` a journal row of its own: 40 away sessions of
 * 300 filters on one topic made each QoS 1 publish 12,000 rows, 70–80
 * publishes in 15 s against 1,380–1,590 without the journal, every other
 * client's PINGRESP up to 6.5 s (hostile review 42b Z5). Mosquitto 2.0.11
 * sends a 3.1.1 session one copy too (at its first-found subscription's QoS,
 * not the highest) and an MQTT 5 one a copy per subscription; MQTT allows
 * both.
 *
 * The copy goes by one of the matching subscriptions, its carrier: the
 * oldest (the lowest sid), so a topic's copies keep to one queue and their
 * order when the session subscribes to another matching filter (the first
 * in the publish's targets was the carrier before: a new `#` became the
 * carrier of later publishes while earlier ones waited in the old one's
 * queue, and the topic arrived out of order, hostile44b H-B2). The others
 * skip it.
 * Two copies go where MQTT 5's options ask for different packets: with
 * RETAIN set by its publisher, one for the subscriptions with
 * Retain As Published and one for the others; a subscription with No Local
 * is left out of its own client's publishes. Shared subscriptions are not
 * merged (each group picks its member). A QoS 0 publish goes a copy per
 * subscription, as MQTT allows (MQTT-3.3.4-2: the Server MAY deliver
 * further copies) and Mosquitto does for MQTT 5: it has no journal row, and
 * a session that cannot take it is left out of its targets subscription by
 * subscription (parking.ts), where a merged copy made each of a stalled
 * session's other subscriptions queue it to drop it. What matched is read from the
 * publish's targets (Message.targets), indexed by session once per publish:
 * no session walks its own filters.
 */
import type { Message, Sink, Subscription } from "../subscriber.ts";
import { MqttPayload } from "./mapping.ts";
import { type By, NO_LOCAL, RETAIN_AS_PUBLISHED, SUBSCRIPTION_ID } from "./delivery.ts";

/** A sink that merges its overlapping subscriptions' copies (an MQTT session holding several). */
interface Merging {
  readonly mergesCopies?: boolean;
}

/**
 * Per publish: the subscriptions among its targets of each session holding
 * several (built at the first ask, gone with the publish). Kept per targets
 * list, which lives as long as its topic's cache, it held about 250 bytes a
 * topic and session for every topic published at QoS 1 or 2: heap +237 MiB
 * for 5,000 topics and 200 sessions on `#` and `+/#` (hostile44b H-B4).
 */
const indexes = new WeakMap<Message, Map<Sink, Subscription[]>>();

/** `sink`'s subscriptions among `msg`'s targets (plain ones), when it merges them. */
function matching(msg: Message, sink: Sink): Subscription[] | undefined {
  const plain = msg.targets?.plain;
  if (plain === undefined) return undefined;
  let index = indexes.get(msg);
  if (index === undefined) {
    index = new Map();
    for (let i = 0; i < plain.length; i++) {
      const sub = plain[i];
      const s = sub.sink;
      if ((s as Merging).mergesCopies !== true || sub.group !== undefined) continue;
      const list = index.get(s);
      if (list === undefined) index.set(s, [sub]);
      else list.push(sub);
    }
    indexes.set(msg, index);
  }
  return index.get(sink);
}

/** A merged delivery: the highest QoS granted, Retain As Published as its class has it, every identifier. */
class Merged implements By {
  data: number;
  readonly ids: number[] = [];
  /** The subscription the copy goes by: the oldest of those matching. */
  carrier: Subscription;

  constructor(rap: boolean, carrier: Subscription) {
    this.data = rap ? RETAIN_AS_PUBLISHED : 0;
    this.carrier = carrier;
  }
}

/** The subscription a delivery by `by` goes by: itself, or a merged copy's carrier. */
export function carrierOf(by: By): Subscription {
  return by instanceof Merged ? by.carrier : by as Subscription;
}

/** A session as one_copy.ts sees it. */
interface Session extends Sink {
  readonly serial: number;
  readonly mergesCopies: boolean;
  oneCopy: OneCopy | undefined;
}

/**
 * What `sub` delivers `msg` by (a subscription of `session`): itself, the
 * merged options of the session's matching subscriptions when it carries
 * their one copy, or null when another does.
 */
export function byOf(session: Session, msg: Message, sub: Subscription): By | null {
  if (
    msg.qos === 0 || msg.targets === undefined || sub.group !== undefined || !session.mergesCopies
  ) return sub;
  return (session.oneCopy ??= new OneCopy(session, session.serial)).of(msg, sub);
}

/** One session's decision for the last publish it was asked about. */
export class OneCopy {
  readonly #sink: Sink;
  /** The session's number, for No Local (MqttPayload.origin). */
  readonly #serial: number;
  /**
   * The publish decided for, held weakly: held, it kept its index (every
   * session the publish reached) alive for as long as this session lasted
   * (hostile45b K-B8: 40 sessions that stayed pinned 20,000 ended ones).
   */
  #msg: WeakRef<Message> | undefined;
  /** Its carrier by class (0: RETAIN cleared, 1: as published), and what it goes by; none: alone. */
  #carriers: (Subscription | undefined)[] = [undefined, undefined];
  #merged: (Merged | undefined)[] = [undefined, undefined];

  constructor(sink: Sink, serial: number) {
    this.#sink = sink;
    this.#serial = serial;
  }

  /**
   * What `sub` delivers `msg` by: itself (no other subscription of the
   * session matched), the merged options when it carries the one copy, or
   * null when another does.
   */
  of(msg: Message, sub: Subscription): By | null {
    if (msg !== this.#msg?.deref()) this.#decide(msg);
    const k = this.#classOf(msg, sub);
    const carrier = this.#carriers[k];
    if (carrier === undefined) return sub; // alone, or left out by No Local (skipped then)
    return carrier === sub ? this.#merged[k]! : null;
  }

  /** 1: its publisher's RETAIN goes with it (Retain As Published); 0: cleared. */
  #classOf(msg: Message, sub: Subscription): number {
    const value = msg.value;
    return value instanceof MqttPayload && value.retain &&
        ((sub.data as number) & RETAIN_AS_PUBLISHED) !== 0
      ? 1
      : 0;
  }

  #decide(msg: Message): void {
    this.#msg = new WeakRef(msg);
    const carriers = this.#carriers, merged = this.#merged;
    carriers[0] = carriers[1] = undefined;
    merged[0] = merged[1] = undefined;
    const subs = matching(msg, this.#sink);
    if (subs === undefined || subs.length < 2) return;
    const value = msg.value;
    const own = value instanceof MqttPayload && value.origin === this.#serial;
    const counts = [0, 0];
    for (let i = 0; i < subs.length; i++) {
      const sub = subs[i];
      const flags = sub.data as number;
      // A subscription cut meanwhile is not a carrier (its copy would be lost).
      if (sub.cancelled || (own && (flags & NO_LOCAL) !== 0)) continue;
      const k = this.#classOf(msg, sub);
      counts[k]++;
      const m = merged[k] ??= new Merged(k === 1, sub);
      if (sub.sid < m.carrier.sid) m.carrier = sub;
      carriers[k] = m.carrier;
      if ((flags & 3) > (m.data & 3)) m.data = (m.data & ~3) | (flags & 3);
      const id = Math.floor(flags / SUBSCRIPTION_ID);
      if (id > 0) m.ids.push(id);
    }
    // A class of one: its subscription goes by itself.
    for (let k = 0; k < 2; k++) if (counts[k] < 2) carriers[k] = merged[k] = undefined;
  }
}
