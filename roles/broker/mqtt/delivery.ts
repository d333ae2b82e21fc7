/**
 * What a delivery to an MQTT subscriber carries, read from the message and
 * the subscription it goes by: its topic's MQTT bytes, its QoS and RETAIN,
 * and (MQTT 5) its properties — the publisher's, the Message Expiry left and
 * the subscription's identifier. The session (session.ts) writes it.
 */
import type { Message } from "../subscriber.ts";
import { MqttPayload, topicToMqtt } from "./mapping.ts";
import { expiryAt, NO_EXTRAS, patchExpiry, type PublishExtras, readExpiry } from "./packets.ts";

const encoder = new TextEncoder();

/** MQTT topic bytes per dist topic (null: none), kept while the map is small. */
const topicBytes = new Map<string, Uint8Array | null>();
export function mqttTopic(topic: string): Uint8Array | null {
  let bytes = topicBytes.get(topic);
  if (bytes === undefined) {
    if (topicBytes.size >= 4096) topicBytes.clear();
    const name = topicToMqtt(topic);
    bytes = name === undefined ? null : encoder.encode(name);
    topicBytes.set(topic, bytes);
  }
  return bytes;
}

/**
 * A subscription's options, in its `data`: the granted QoS (bits 0–1) and
 * these flags.
 */
export const NO_LOCAL = 4;
export const RETAIN_AS_PUBLISHED = 8;
/** Retain handling 2, or 1 for a subscription that existed: no retained values at subscribe. */
export const SKIP_RETAINED = 16;
/**
 * The MQTT 5 Subscription Identifier is `data` ÷ this (up to 2^28: past
 * 32 bits, which the flags' `&` still reads right, as it reads the low bits).
 */
export const SUBSCRIPTION_ID = 32;

/**
 * What a delivery goes by: a subscription (its options in `data`), or the
 * overlapping subscriptions of one client its one copy stands for
 * (one_copy.ts): their options merged in `data`, their identifiers in `ids`.
 */
export interface By {
  readonly data: unknown;
  readonly ids?: readonly number[];
  /** Its queue group (a subscription's; a merged copy is never a group's: one_copy.ts byOf). */
  readonly group?: string;
}

/** The MQTT 5 properties a delivery by `sub` carries: `extras` with its Subscription Identifier(s). */
export function withSubscription(extras: PublishExtras, sub: By): PublishExtras {
  const ids = sub.ids;
  if (ids !== undefined) return ids.length === 0 ? extras : { ...extras, subscription: ids };
  const id = Math.floor((sub.data as number) / SUBSCRIPTION_ID);
  return id === 0 ? extras : { ...extras, subscription: id };
}

export function qosOf(msg: Message, sub: By): number {
  return Math.min(msg.qos, (sub.data as number) & 3);
}

/** RETAIN: a retained value's, or with retain-as-published the publish's own flag. */
export function retainOf(msg: Message, sub: By): boolean {
  if (msg.retained) return true;
  const value = msg.value;
  return ((sub.data as number) & RETAIN_AS_PUBLISHED) !== 0 && value instanceof MqttPayload &&
    value.retain;
}

/**
 * The MQTT 5 properties a delivery carries: an MQTT publish's own, with
 * the Message Expiry left (seconds; `absolute`: the second it runs out
 * at). Undefined when it has expired.
 */
export function extrasOf(msg: Message, absolute: boolean): PublishExtras | undefined {
  const value = msg.value;
  if (!(value instanceof MqttPayload)) return NO_EXTRAS;
  const at = value.expiresAt;
  if (at < 0) {
    return value.properties.length === 0 ? NO_EXTRAS : { properties: value.properties, expiry: -1 };
  }
  if (absolute) return { properties: value.properties, expiry: Math.ceil(at / 1000) };
  const left = at - Date.now();
  return left < 0 ? undefined : { properties: value.properties, expiry: Math.ceil(left / 1000) };
}

/**
 * A delivery kept for a redelivery, its Message Expiry (MQTT 5) made the
 * second it runs out at, as queued ones hold it (MQTT 5 packets only): from the seconds left it
 * went with (`left`), or copied from the queued bytes (`left` -2).
 */
export function keptAbsolute(kept: Uint8Array, left: number, queued?: Uint8Array): Uint8Array {
  const e = expiryAt(kept);
  if (e < 0) return kept;
  const at = queued === undefined
    ? Math.ceil(Date.now() / 1000) + left
    : readExpiry(queued, expiryAt(queued));
  patchExpiry(kept, e, at);
  return kept;
}

/**
 * A kept delivery as it goes again: its Message Expiry the seconds left
 * (at least 1: its delivery had begun, and MQTT has it sent again).
 */
export function secondsLeft(kept: Uint8Array): Uint8Array {
  const e = expiryAt(kept);
  if (e < 0) return kept;
  const out = kept.slice();
  patchExpiry(out, e, Math.max(1, Math.ceil(readExpiry(kept, e) - Date.now() / 1000)));
  return out;
}

/** Most Topic Aliases we set on one connection (at most the client's Topic Alias Maximum). */
export const OUT_ALIASES_MAX = 64;

/**
 * MQTT 5 Topic Aliases from the broker to one client (its CONNECT's Topic
 * Alias Maximum): the first topics delivered get one each, sent once with
 * the topic, then alone (an empty topic). Per connection: a new one starts
 * afresh, so deliveries kept for a redelivery carry their topic.
 */
export class OutAliases {
  readonly #max: number;
  readonly #byTopic = new Map<string, number>();

  constructor(clientMax: number) {
    this.#max = Math.min(clientMax, OUT_ALIASES_MAX);
  }

  /** `topic`'s alias: > 0 known to the client (send it alone), < 0 new (send both), 0 none. */
  of(topic: string): number {
    const known = this.#byTopic.get(topic);
    if (known !== undefined) return known;
    if (this.#byTopic.size >= this.#max) return 0;
    const alias = this.#byTopic.size + 1;
    this.#byTopic.set(topic, alias);
    return -alias;
  }

  /**
   * Takes back the alias `of` just gave `topic` as new, for a delivery not
   * sent after all (past the client's Maximum Packet Size): a later one
   * would otherwise carry an alias the client never got (hostile46b M-B1).
   */
  unsent(topic: string): void {
    if (this.#byTopic.get(topic) === this.#byTopic.size) this.#byTopic.delete(topic);
  }
}
