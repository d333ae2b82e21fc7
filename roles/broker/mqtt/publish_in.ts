/**
 * A PUBLISH from a client made a core publish: its topic checked and
 * mapped (cached for the next publish to the same topic, or found by its
 * MQTT 5 Topic Alias), its properties read, its QoS exchange answered.
 * Made at a connection's first PUBLISH: a subscriber holds none of it.
 */
import { DistError } from "../../../wire/mod.ts";
import { MAX_TOPIC_LENGTH } from "../../../clients/contracts/mod.ts";
import type { Identity } from "../../../wire/credentials.ts";
import { MqttPayload, topicFromMqtt } from "./mapping.ts";
import type { MqttSession } from "./session.ts";
import type { Publisher } from "../fanout.ts";
import type { MqttFront } from "./front.ts";
import { MAX_QOS2_PENDING, TOPIC_ALIAS_MAX } from "./connect.ts";
import { PUBACK, PUBCOMP, type Publish, PUBREC, readPublish } from "./packets.ts";
import { PropertyFault, scanPublishProperties } from "./properties.ts";
import { CLOSING } from "./reader.ts";
import { readBuffers } from "../memory.ts";
import { routeBegins, routed } from "./pace.ts";

/**
 * A QoS 2 publish whose commit failed (a full disk) was routed all the
 * same (live subscribers had it): its id stays, marked null, so that its
 * resend is not routed again (hostile review 42b Z2: a live subscriber got
 * a copy per resend, each a new PUBLISH, 9 in 8 s) but waits for the
 * store's retry of the same rows ({@link retried}).
 */
function notKept(
  pending: Map<number, Promise<void> | null | undefined>,
  id: number,
  wait: Promise<void> | undefined,
): void {
  wait?.catch(() => pending.get(id) === wait && pending.set(id, null));
}

/** The resend of a QoS 2 publish not kept: PUBREC once the store's retry commits its rows. */
function retried(
  c: PublishSide,
  pending: Map<number, Promise<void> | null | undefined>,
  id: number,
): Promise<void> | undefined {
  const again = c.front.core.keeper?.commit(false);
  pending.set(id, again);
  notKept(pending, id, again);
  return again;
}

const strict = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/**
 * What a Topic Alias set by a client is counted at: its name (V8 strings:
 * at most 2 bytes a UTF-16 unit) and the rest of it. 200 connections × 64
 * aliases of their own 1,024-character names (2 bytes a character) held 25
 * MiB of live heap once their topics were forgotten, about 2 KB each.
 */
function aliasCost(topic: string): number {
  return 64 + 2 * topic.length;
}

/** The connection, as its inbound PUBLISHes need it. */
/** A connection whose PUBLISHes the core takes (held back while they fill the fan-out). */
export interface PublishSide extends Publisher {
  readonly v5: boolean;
  readonly clientId: string;
  readonly remote: string;
  readonly session: MqttSession;
  readonly identity: Identity | undefined;
  readonly front: MqttFront;
  protocolError(why: string, reason?: number): undefined;
  refuse(reason: number, why: string): undefined;
  ack(type: number, id: number): undefined;
  state(): number;
  send(packet: Uint8Array): void;
}

export class Inbound {
  #lastBytes: Uint8Array | undefined;
  #lastTopic = "";
  /** The dist topics of the client's Topic Aliases (MQTT 5), by alias. */
  #aliases: string[] | undefined;
  /** What they take, counted in max-memory (memory.ts readBuffers; see aliasCost). */
  #aliasBytes = 0;
  #released = false;

  /**
   * The PUBLISH whose body is `buf[body..e)`, first byte `first`: a promise
   * when the client's next packet is to wait for the subscribers it fed
   * (pace.ts).
   */
  publish(
    c: PublishSide,
    first: number,
    buf: Uint8Array,
    body: number,
    e: number,
  ): Promise<void> | undefined {
    const p = readPublish(first, buf, body, e, c.v5);
    if (typeof p === "string") return c.protocolError(p);
    const extras = p.properties.length > 0 ? scanPublishProperties(p.properties) : undefined;
    if (extras instanceof PropertyFault) return c.protocolError(extras.why, extras.code);
    const alias = extras?.alias ?? -1;
    if (alias === 0 || alias > TOPIC_ALIAS_MAX) {
      return c.refuse(0x94, `Topic Alias ${alias}, outside 1–${TOPIC_ALIAS_MAX}`);
    }
    const topic = this.#topicOf(c, p, alias);
    if (topic === undefined) return;
    const { qos, id } = p;
    const session = c.session;
    if (qos === 2) {
      // A resend: PUBREC once the first's commit is done (hostile review 41b X2: answered at
      // once, a resend after a failed commit got PUBREC, then PUBCOMP, for a message not kept).
      const first = session.qos2In?.get(id);
      if (first !== undefined || session.qos2In?.has(id)) {
        return this.#ack(c, PUBREC, id, first === null ? retried(c, session.qos2In!, id) : first);
      }
      if ((session.qos2In?.size ?? 0) >= MAX_QOS2_PENDING) {
        return c.refuse(0x93, "more QoS 2 publishes awaiting PUBREL than Receive Maximum");
      }
    }
    try {
      c.identity?.access?.check("broker.publish", { action: "publish", name: topic });
    } catch (err) {
      return this.#refuse(c, qos, id, 0x87, (err as Error).message);
    }
    const value = MqttPayload.borrow(p.payload);
    value.origin = c.session.serial;
    value.retain = p.retain;
    if (extras !== undefined) {
      value.properties = extras.properties;
      if (extras.expiry >= 0) value.expiresAt = Date.now() + extras.expiry * 1000;
    }
    let settled: Promise<void> | undefined;
    // A persistent session's id awaiting PUBREL is kept on disk, in the commit PUBREC waits for.
    const journal = qos === 2 ? session.journal : undefined;
    const before = journal === undefined ? 0 : c.front.core.keeper?.written ?? 0;
    journal?.received(id);
    let paced: Promise<void> | undefined;
    routeBegins(c.front.core.maxPending);
    try {
      settled = c.front.core.publish(topic, value, p.retain, qos, c, c.identity?.user).settled;
      if (journal !== undefined) settled ??= c.front.core.keeper?.commitSince(before, false);
      c.front.messagesIn++;
      // A retained value's ack waits for its commit too, as a native publish's answer does
      // (hostile review 40a T4: a SIGKILL after the PUBACK lost it 7 times of 8).
      const kept = p.retain && qos > 0 ? c.front.committed?.() : undefined;
      if (kept !== undefined) {
        settled = settled === undefined ? kept : Promise.all([settled, kept]).then(() => {});
      }
    } catch (err) {
      // A topic the core refuses: $SYS (not authorized), or too deep, spaces (our limit, not
      // the client's fault).
      this.#lastBytes = undefined;
      journal?.released(id);
      const code = err instanceof DistError ? err.code : "";
      // Past --max-memory, no new topics: Quota exceeded (hostile45b K-B2), not a bad name.
      const reason = code === "UNAUTHORIZED" ? 0x87 : code === "OVERLOADED" ? 0x97 : 0x90;
      return this.#refuse(c, qos, id, reason, (err as Error).message);
    } finally {
      paced = routed();
      value.release();
    }
    if (qos === 1) this.#ack(c, PUBACK, id, settled);
    else if (qos === 2) {
      const pending = session.qos2In ??= new Map();
      pending.set(id, settled);
      notKept(pending, id, settled);
      this.#ack(c, PUBREC, id, settled);
    }
    return paced;
  }

  /** Acknowledgements waiting (see #ack), in order, each with what it waits for and its reason code. */
  #acks: { type: number; id: number; wait: Promise<void> | undefined; reason: number }[] = [];
  /** The last promise waited for (a commit is shared by a turn's publishes: handled once). */
  #lastWait: Promise<void> | undefined;
  #pumping = false;
  #failed = false;

  /**
   * PUBACK or PUBREC, once the publish is kept (`settled`: its deliveries
   * made and the journal's commit of what they wrote done; hostile review
   * 39b Q1: acknowledged before, a SIGKILL lost it for every persistent
   * session), in the order the PUBLISHes came (MQTT 4.6). Past
   * {@link MAX_QOS2_PENDING} waiting, the client is not read until they
   * go. A failed commit closes the connection unacknowledged (the client
   * sends again). A refusal (`reason`, MQTT 5) and a PUBCOMP wait their
   * turn too (hostile review 40a T1: they went ahead of the PUBACKs
   * waiting for the commit).
   */
  #ack(
    c: PublishSide,
    type: number,
    id: number,
    settled: Promise<void> | undefined,
    reason = 0,
  ): undefined {
    const acks = this.#acks;
    if (settled === undefined && acks.length === 0) return send(c, type, id, reason);
    if (settled !== undefined && settled !== this.#lastWait) {
      this.#lastWait = settled;
      settled.catch(() => {}); // said when it is its turn (#pump)
    }
    acks.push({ type, id, wait: settled, reason });
    if (acks.length === MAX_QOS2_PENDING) c.holdBack();
    if (!this.#pumping) this.#pump(c);
  }

  /** Sends the acknowledgements in order, each run of those waiting for the same commit at once. */
  async #pump(c: PublishSide): Promise<void> {
    this.#pumping = true;
    const acks = this.#acks;
    while (acks.length > 0) {
      const wait = acks[0].wait;
      try {
        await wait;
      } catch (err) {
        if (!this.#failed && c.state() < CLOSING) {
          c.front.warn(c, `PUBLISH not acknowledged: ${(err as Error).message}`);
          c.refuse(0x80, (err as Error).message);
        }
        this.#failed = true;
      }
      let i = 0;
      while (i < acks.length && (acks[i].wait === wait || acks[i].wait === undefined)) {
        const a = acks[i];
        if (!this.#failed && c.state() < CLOSING) send(c, a.type, a.id, a.reason);
        i++;
      }
      const held = acks.length >= MAX_QOS2_PENDING;
      acks.splice(0, i);
      if (held && acks.length < MAX_QOS2_PENDING && !c.heldBack && !c.front.core.matches.busy(c)) {
        c.goOn();
      }
    }
    this.#pumping = false;
  }

  /**
   * The dist topic of a PUBLISH: by its MQTT 5 Topic Alias, the last
   * PUBLISH's (the same bytes), or read and mapped; undefined when it is
   * refused (said to the client already).
   */
  #topicOf(c: PublishSide, p: Publish, alias: number): string | undefined {
    const tb = p.topic;
    const last = this.#lastBytes;
    if (tb.length === 0 && alias > 0) {
      // A topic sent before under this alias.
      const known = this.#aliases?.[alias];
      if (known === undefined) return c.protocolError(`Topic Alias ${alias}, which was not set`);
      return known;
    }
    let topic: string;
    if (last !== undefined && sameBytes(last, tb)) {
      topic = this.#lastTopic;
    } else {
      let name: string;
      try {
        name = strict.decode(tb);
      } catch {
        return c.protocolError("a topic that is not UTF-8");
      }
      if (name.includes("\0")) return c.protocolError("a topic with U+0000");
      if (name.includes("+") || name.includes("#")) {
        return c.protocolError("a wildcard in a PUBLISH topic");
      }
      if (name === "") return c.protocolError("an empty topic without a Topic Alias");
      try {
        topic = topicFromMqtt(name);
      } catch (err) {
        return this.#refuse(c, p.qos, p.id, 0x90, (err as Error).message);
      }
      if (topic.length > MAX_TOPIC_LENGTH) {
        // Refused before it is kept as the last topic or mapped to an alias (hostile45b K-B6: 64
        // aliases of refused 65,000-character names a connection held 4 MiB, counted nowhere).
        const why = `Topic is too long: ${topic.length} characters (at most ${MAX_TOPIC_LENGTH})`;
        return this.#refuse(c, p.qos, p.id, 0x90, why);
      }
      this.#lastBytes = tb.slice();
      this.#lastTopic = topic;
    }
    if (alias > 0 && tb.length > 0 && !this.#setAlias(c, p, alias, topic)) return;
    return topic;
  }

  /**
   * Maps `alias` to `topic`, counted in max-memory; false when that would
   * take the broker past it (refused, 0x97 Quota exceeded, as a new topic
   * is: 64 aliases of 1,024 characters a connection were held uncounted).
   */
  #setAlias(c: PublishSide, p: Publish, alias: number, topic: string): boolean {
    const aliases = this.#aliases ??= [];
    const was = aliases[alias];
    if (was === topic) return true;
    const more = aliasCost(topic) - (was === undefined ? 0 : aliasCost(was));
    if (c.front.core.wouldCross(more)) {
      this.#refuse(c, p.qos, p.id, 0x97, "a Topic Alias while the broker is at its memory budget");
      return false;
    }
    aliases[alias] = topic;
    if (this.#released) return true; // the connection is gone: its aliases are no longer counted
    this.#aliasBytes += more;
    readBuffers.bytes += more;
    return true;
  }

  /** Gives back what the aliases took (the connection closed). */
  release(): void {
    readBuffers.bytes -= this.#aliasBytes;
    this.#aliasBytes = 0;
    this.#aliases = undefined;
    this.#released = true;
  }

  /** A publish we do not take: MQTT 5 says why (QoS 0: in a DISCONNECT); 3.1.1 can only close. */
  #refuse(c: PublishSide, qos: number, id: number, reason: number, why: string): undefined {
    c.front.refusedPublishes++;
    c.front.warn(c, `PUBLISH refused: ${why}`);
    if (!c.v5 || qos === 0) return c.refuse(reason, why);
    this.#ack(c, qos === 1 ? PUBACK : PUBREC, id, undefined, reason);
  }

  /**
   * PUBREL of `id`: the id is free; PUBCOMP after the PUBREC of the same
   * id (when that waits for a commit) and once a persistent session's row
   * of the id is deleted (journal.ts QOS2_IN: a kill before would answer
   * a new PUBLISH of the id PUBREC, not route it).
   */
  released(c: PublishSide, id: number): undefined {
    const session = c.session;
    const had = session.qos2In?.delete(id) === true;
    if (!had) return this.#ack(c, PUBCOMP, id, undefined, c.v5 ? 0x92 : 0); // id not found
    return this.#ack(c, PUBCOMP, id, session.journal?.released(id));
  }
}

/** An acknowledgement, with a reason code (MQTT 5) when it is not 0. */
function send(c: PublishSide, type: number, id: number, reason: number): undefined {
  if (reason === 0) return c.ack(type, id);
  c.send(Uint8Array.of(type << 4, 3, id >> 8, id & 0xff, reason));
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
