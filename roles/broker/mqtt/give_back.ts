/**
 * What a session that ends owes its queue groups (MQTT 5 §4.8.2: a shared
 * subscription's message whose client's session ends unacknowledged goes
 * to another member): the deliveries its group subscriptions had in flight,
 * neither acknowledged nor (QoS 2) received, and what waited in their
 * queues. Each goes to another member of its group, as the fan-out would
 * have given it; with none left, it is counted dropped (hostile46b M-B3:
 * lost, uncounted). Read back from the PUBLISH bytes kept for it
 * (publish_out.ts), so what goes on is what the member was sent: its
 * topic, payload, RETAIN flag, the publisher's MQTT 5 properties and
 * Message Expiry, at the QoS it went at.
 */
import { Message, type Subscription } from "../subscriber.ts";
import type { BrokerCore } from "../core.ts";
import { deliverToGroup } from "../group_delivery.ts";
import { groupCounts } from "../group.ts";
import { MqttPayload } from "./mapping.ts";
import { patchId, type Publish, publishQos, readPublish } from "./packets.ts";
import type { InflightWindow } from "./inflight.ts";
import type { ByteQueue } from "../byte_queue.ts";

const decoder = new TextDecoder("utf-8", { ignoreBOM: true });

/**
 * What one group subscription of an ending session leaves: PUBLISH packets,
 * oldest first: those it had in flight, then its queue (taken whole).
 */
export interface Owed {
  readonly sub: Subscription;
  readonly packets: Uint8Array[];
  readonly queue?: ByteQueue;
}

/**
 * Takes what the session's group subscriptions owe their groups, before
 * they are cut: what is in flight (from `inflight`), then what is queued.
 * A subscription that is its group's last member has no one to give it to:
 * counted as its drops at once (in `sys.stats` `dropped` and
 * `dist_broker_dropped_total`, once it is cut).
 */
export function takeOwed(
  subs: Iterable<Subscription>,
  inflight: InflightWindow,
  core: BrokerCore,
): Owed[] {
  const owed = new Map<Subscription, Uint8Array[]>();
  for (const { by, bytes } of inflight.givenBack()) {
    const packets = owed.get(by);
    if (packets === undefined) owed.set(by, [bytes]);
    else packets.push(bytes);
  }
  const queues = new Map<Subscription, ByteQueue>();
  for (const sub of subs) {
    if (sub.group === undefined || sub.queued === 0) continue;
    queues.set(sub, sub.takeQueued());
    if (!owed.has(sub)) owed.set(sub, []);
  }
  // (A member unsubscribed meanwhile still owes what it had in flight.)
  const out: Owed[] = [];
  for (const [sub, packets] of owed) {
    const group = core.subscriptions.groupOf(sub);
    const others = (group?.members.length ?? 0) - (group?.members.includes(sub) ? 1 : 0);
    const queue = queues.get(sub);
    // The group's last member: dropped as it is cut (one cut already: undeliverable, GiveBacks).
    if (others === 0 && !sub.cancelled) {
      sub.dropped += packets.length + (queue?.length ?? 0);
      queue?.clear();
    } else out.push({ sub, packets, queue });
  }
  return out;
}

/** Messages given back per turn of the event loop at most (as the fan-out: fanout.ts; hostile h47b N3). */
export const GIVE_BACK_PER_TURN = 8192;
/** Time given to giving back per turn of the event loop at most (ms). */
const GIVE_BACK_TURN_MS = 5;

/** One group subscription's messages still to give back, from `at`. */
interface Giving extends Owed {
  readonly v5: boolean;
  at: number;
}

/**
 * Gives what {@link takeOwed} took to the other members of each group,
 * once the session's subscriptions are cut (so none comes back to it);
 * counted in `queue_groups.given_back`. A group whose members all left
 * meanwhile: counted undeliverable. In slices, as the fan-out's runs are:
 * at most {@link GIVE_BACK_PER_TURN} messages or {@link GIVE_BACK_TURN_MS}
 * a turn of the event loop, the rest in later turns, oldest leave first
 * (hostile h47b N3: a member leaving with 250,000 queued stopped the broker
 * for every client 0.3 to 1.4 s while its queue moved in one loop).
 */
export class GiveBacks {
  readonly #core: BrokerCore;
  readonly #lost: { undeliverable: number };
  readonly #work: Giving[] = [];
  #timer: ReturnType<typeof setTimeout> | undefined;
  #closed = false;

  constructor(core: BrokerCore, lost: { undeliverable: number }) {
    this.#core = core;
    this.#lost = lost;
  }

  /** Messages taken and not given back yet. */
  get pending(): number {
    let n = 0;
    for (const w of this.#work) n += w.packets.length - w.at + (w.queue?.length ?? 0);
    return n;
  }

  /** Gives `owed` back (a first slice now when nothing waits before it); `v5`: written for MQTT 5. */
  add(owed: readonly Owed[], v5: boolean): void {
    if (this.#closed) return void (this.#lost.undeliverable += count(owed));
    for (const o of owed) this.#work.push({ ...o, v5, at: 0 });
    if (this.#timer === undefined) this.#slice();
  }

  /** At the broker's stop: what is not given back yet is counted undeliverable. */
  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#lost.undeliverable += this.pending;
    for (const w of this.#work) w.queue?.clear();
    this.#work.length = 0;
  }

  readonly #slice = (): void => {
    this.#timer = undefined;
    const end = performance.now() + GIVE_BACK_TURN_MS;
    let done = 0;
    while (this.#work.length > 0) {
      const w = this.#work[0];
      if (w.at === w.packets.length && !(w.queue?.length)) {
        this.#work.shift();
        continue;
      }
      if (done >= GIVE_BACK_PER_TURN || (done % 64 === 63 && performance.now() > end)) break;
      done++;
      // In flight first, then the queue (a view of its buffer, read at once: messageOf copies).
      let packet: Uint8Array;
      if (w.at < w.packets.length) {
        packet = w.packets[w.at];
        w.packets[w.at++] = EMPTY; // its bytes free as it goes
      } else packet = w.queue!.shift()!;
      const group = this.#core.subscriptions.groupOf(w.sub);
      const msg = messageOf(packet, w.v5);
      if (group === undefined || group.members.length === 0 || msg === undefined) {
        this.#lost.undeliverable++;
        continue;
      }
      groupCounts.givenBack++;
      deliverToGroup(group, msg);
    }
    // A timeout, not setImmediate (see durable.ts #next): sockets are polled between slices.
    if (this.#work.length > 0) this.#timer = setTimeout(this.#slice, 0);
  };
}

const EMPTY = new Uint8Array(0);

function count(owed: readonly Owed[]): number {
  let n = 0;
  for (const o of owed) {
    n += o.packets.length + (o.queue?.length ?? 0);
    o.queue?.clear();
  }
  return n;
}

/**
 * The message a PUBLISH this broker wrote carries (publish_out.ts: its own
 * properties first, Message Expiry as the second it runs out at, then the
 * publisher's; `v5`: written for an MQTT 5 session, with properties);
 * undefined if it is not one. Its packet id is overwritten.
 */
export function messageOf(packet: Uint8Array, v5: boolean): Message | undefined {
  let body = 1;
  while (body < packet.length && (packet[body] & 0x80) !== 0) body++;
  body++;
  // A queued one has no packet id yet (0, which a read refuses): any will do (the bytes are ours).
  if (publishQos(packet) > 0) patchId(packet, 1);
  const read = readPublish(packet[0], packet, body, packet.length, v5);
  if (typeof read === "string") return undefined;
  const payload = MqttPayload.borrow(read.payload.slice());
  payload.retain = read.retain;
  ownProperties(read, payload);
  const msg = new Message("/" + decoder.decode(read.topic), payload);
  msg.qos = read.qos;
  return msg;
}

/** Reads what this broker put in the packet's properties; the publisher's pass on. */
function ownProperties(read: Publish, payload: MqttPayload): void {
  const p = read.properties;
  let at = 0;
  for (;;) {
    if (p[at] === 0x02) {
      const seconds = ((p[at + 1] << 24) | (p[at + 2] << 16) | (p[at + 3] << 8) | p[at + 4]) >>> 0;
      payload.expiresAt = seconds * 1000;
      at += 5;
    } else if (p[at] === 0x0b) {
      at++;
      while (at < p.length && (p[at] & 0x80) !== 0) at++;
      at++;
    } else if (p[at] === 0x23) at += 3;
    else break;
  }
  if (at < p.length) payload.properties = p.slice(at);
}
