/**
 * SUBSCRIBE and UNSUBSCRIBE from a client: parsed (with mqtt-packet: they
 * come once per subscription, not per message), done by the session that
 * holds the subscriptions, answered with SUBACK and UNSUBACK.
 *
 * A packet may name thousands of filters (hostile review 34, Z8: 20 ×
 * SUBSCRIBE + UNSUBSCRIBE of 10,000 filters held another client's ping
 * 4-10 s): its filters are done FILTERS_PER_JOB at a time, each such job
 * taking turns with the native front's costly requests (../costly_turns.ts:
 * a few ms of each event-loop turn, in rotation over sources), and the
 * connection reads no further packet meanwhile (the read loop awaits the
 * packet); SUBACK or UNSUBACK once all are done. MQTT never sends the
 * covered topics' names, so none are listed (`namesBytes: 0`).
 */
import type { ISubscribePacket, ISubscription, IUnsubscribePacket } from "mqtt-packet";
import { DistError } from "../../../wire/mod.ts";
import type { Snapshot, Subscription } from "../subscriber.ts";
import type { BrokerCore } from "../core.ts";
import { coverage, wholeTree } from "../snapshot.ts";
import { placeUnder } from "../restore.ts";
import { filterFromMqtt } from "./mapping.ts";
import { shareSource } from "../shares.ts";
import { NO_LOCAL, RETAIN_AS_PUBLISHED, SKIP_RETAINED, SUBSCRIPTION_ID } from "./delivery.ts";
import { MalformedString, PacketFault, parseSlow, withIds } from "./packets.ts";
import type { MqttConnection } from "./connection.ts";
import { CLOSED } from "./reader.ts";
import type { TurnOwner } from "../costly_turns.ts";

/** Most subscriptions one session may hold (as a connection on the native port). */
const MAX_SUBSCRIPTIONS = 10_000;
/** The highest QoS of a delivery. */
const MAX_QOS_OUT = 2;
/** Filters of one packet done in one job (one subscribe is some µs, more over a wide tree). */
export const FILTERS_PER_JOB = 32;

/** A connection as the costly turns' owner (its reading waits on the packet: nothing to hold). */
const owners = new WeakMap<MqttConnection, TurnOwner>();
function ownerOf(c: MqttConnection): TurnOwner {
  let owner = owners.get(c);
  if (owner === undefined) {
    const conn = {
      get isClosed() {
        return c.state() === CLOSED;
      },
    };
    owners.set(c, owner = { holdInput() {}, conn });
  }
  return owner;
}

/**
 * Runs `work(from, to)` over `n` items, FILTERS_PER_JOB at a time, each a
 * job of the costly turns, then `done()`: undefined when all ran in this
 * turn and `done()` gave none, else a promise the read loop waits for. A
 * connection closed meanwhile: the rest is not done, and `stopped()`
 * instead of `done()`.
 */
function inTurns(
  c: MqttConnection,
  n: number,
  work: (from: number, to: number) => void,
  done: () => Promise<void> | void,
  stopped?: () => void,
): Promise<void> | undefined {
  const turns = c.front.costly;
  const owner = ownerOf(c);
  let at = 0;
  const step = (): Promise<void> | undefined => {
    while (at < n) {
      const from = at;
      const to = at = Math.min(n, at + FILTERS_PER_JOB);
      const ran = turns.run(owner, () => work(from, to), c.source);
      if (ran instanceof Promise) {
        return ran.then(step, (err) => {
          if (c.state() !== CLOSED) c.failed(err as Error);
          stopped?.();
        });
      }
    }
    return done() ?? undefined;
  };
  return step();
}

/**
 * `answer()` once what the session's change wrote is on disk (`--data-dir`:
 * the journal's commit), at once without one: a client told Session
 * Present 1 does not subscribe again, so a SUBACK sent before the session's
 * row was committed lost that subscription to a SIGKILL (hostile review 39b
 * Q5: 12 of 12). A failed commit closes the connection unanswered.
 * `after()` runs in every case, once the answer is sent or not.
 */
function whenKept(
  c: MqttConnection,
  written: number,
  answer: () => void,
  after?: () => void,
): Promise<void> | void {
  const kept = c.front.core.keeper?.commitSince(written);
  if (kept === undefined) {
    answer();
    return after?.();
  }
  return kept.then(() => {
    if (c.state() !== CLOSED) answer();
    after?.();
  }, (err) => {
    after?.();
    c.failed(err as Error);
  });
}

export function onSubscribe(c: MqttConnection, packet: Uint8Array): Promise<void> | undefined {
  let p: ISubscribePacket;
  try {
    p = parseSlow(packet, c.version) as ISubscribePacket;
  } catch (err) {
    return c.protocolError(`a malformed SUBSCRIBE (${(err as Error).message})`, malformedCode(err));
  }
  if (p.subscriptions.length === 0) return c.protocolError("a SUBSCRIBE with no filter");
  const id = p.properties?.subscriptionIdentifier;
  if (Array.isArray(id) || id === 0) return c.protocolError("a bad Subscription Identifier");
  const filters = p.subscriptions;
  const codes: number[] = [];
  const added: Subscription[] = [];
  const written = c.front.core.keeper?.written ?? 0;
  return inTurns(c, filters.length, (from, to) => {
    subscribe(c, filters.slice(from, to), id, codes, added);
  }, () =>
    whenKept(
      c,
      written,
      () => c.send(withIds(0x90, p.messageId ?? 0, codes, c.v5)),
      // The SUBACK is queued: retained values and live messages follow it. Closed meanwhile (a
      // takeover, a failed commit), the subscriptions are the session's all the same (hostile43b
      // B2: held for good, a session taken over before its SUBACK got nothing).
      () => {
        for (const sub of added) sub.release();
      },
    ), () => {
    // Closed before its SUBACK: what it subscribed stays (a persistent session's), not held.
    for (const sub of added) sub.release();
  });
}

export function onUnsubscribe(c: MqttConnection, packet: Uint8Array): Promise<void> | undefined {
  let p: IUnsubscribePacket;
  try {
    p = parseSlow(packet, c.version) as IUnsubscribePacket;
  } catch (err) {
    return c.protocolError(
      `a malformed UNSUBSCRIBE (${(err as Error).message})`,
      malformedCode(err),
    );
  }
  const filters = p.unsubscriptions;
  const codes: number[] = [];
  const written = c.front.core.keeper?.written ?? 0;
  return inTurns(
    c,
    filters.length,
    (from, to) => {
      codes.push(...c.session.unsubscribeFilters(filters.slice(from, to)));
    },
    () =>
      whenKept(c, written, () => c.send(withIds(0xb0, p.messageId ?? 0, c.v5 ? codes : [], c.v5))),
  );
}

/**
 * Some of SUBSCRIBE's filters: each subscribed (the same filter again
 * replaces its subscription, and its retained values come again), or
 * refused with its SUBACK code (pushed to `codes`). The new subscriptions
 * (pushed to `added`) are held: release them once the SUBACK is queued.
 */
function subscribe(
  c: MqttConnection,
  filters: readonly ISubscription[],
  subscriptionId: number | undefined,
  codes: number[],
  added: Subscription[],
): void {
  const { session, v5, identity, front } = c;
  const subs = session.subscriptions();
  for (const { topic, qos, nl, rap, rh } of filters) {
    try {
      const filter = filterFromMqtt(topic, v5);
      identity?.access?.check("broker.subscribe", { action: "subscribe", name: filter.pattern });
      const old = subs.get(topic);
      if (old === undefined && subs.size >= MAX_SUBSCRIPTIONS) {
        codes.push(v5 ? 0x97 : 0x80);
        continue;
      }
      const granted = Math.min(qos, MAX_QOS_OUT);
      // No Local on a shared subscription (a Protocol Error, MQTT-3.8.3-4) is ignored, as
      // Mosquitto does: the group picked the publisher's own member, which skipped it, for half
      // its publishes, lost uncounted (hostile46b M-B5).
      const noLocal = nl === true && filter.group === undefined;
      const data = (granted | (noLocal ? NO_LOCAL : 0) |
        (rap === true ? RETAIN_AS_PUBLISHED : 0) |
        (rh === 2 || (rh === 1 && old !== undefined) ? SKIP_RETAINED : 0)) +
        (subscriptionId ?? 0) * SUBSCRIPTION_ID;
      if (old !== undefined && !old.cancelled) {
        // The same filter again: its subscription takes the new options, its queue kept (replaced
        // "without interrupting the flow", [MQTT-3.8.4-3]), its retained values after that queue.
        // Retain Handling says whether this SUBSCRIBE sends them, not whether what an earlier one
        // is still sending goes on (hostile43b B5: RH 1 or 2 stopped it, 100 of 2,000 values).
        const again = (data & SKIP_RETAINED) === 0;
        old.data = again ? data : data - SKIP_RETAINED + ((old.data as number) & SKIP_RETAINED);
        old.again(again ? retainedAgain(front.core, old) : undefined);
        session.journal?.rewrite(old);
        added.push(old);
        codes.push(granted);
        continue;
      }
      if (old !== undefined) session.unsubscribe(old);
      const { sub } = front.core.subscribe(session, {
        topic: filter.pattern,
        group: filter.group,
        exact: filter.exact,
        // Away, a session's deliveries wait under max-pending: past it the oldest go, counted.
        policy: session.expiry > 0 ? "drop-oldest" : undefined,
        // One user's (or address's) share, whichever protocol it subscribes with.
        source: shareSource(c.source),
        // MQTT never sends the covered topics' names.
        namesBytes: 0,
        count: false,
      });
      sub.data = data;
      subs.set(topic, sub);
      // Its row on disk (a persistent session's, `--data-dir`), which SUBACK waits for.
      session.journal?.numberOf(sub);
      added.push(sub);
      codes.push(granted);
    } catch (err) {
      const e = DistError.from(err);
      front.warn(c, `SUBSCRIBE ${JSON.stringify(topic)} refused: ${e.message}`);
      // MQTT 5: 0x97 Quota exceeded for a limit (max-subscriptions, a share, max-memory).
      codes.push(
        !v5 ? 0x80 : e.code === "UNAUTHORIZED" ? 0x87 : e.code === "OVERLOADED" ? 0x97 : 0x8f,
      );
    }
  }
}

/** The retained values `sub` covers, taken again as it takes them (none for a queue group's). */
function retainedAgain(core: BrokerCore, sub: Subscription): Snapshot | undefined {
  if (sub.group !== undefined) return undefined;
  const { segments, exact } = sub;
  core.topics.need(segments);
  if (!wholeTree(core.topics, segments, exact)) placeUnder(core, segments);
  const covered = coverage(core.topics, segments, { exact, namesBytes: 0, count: false });
  return covered.snapshot(core.messagesIn, () => void core.retainedSent++);
}

/**
 * MQTT 5's DISCONNECT reason for a packet that does not parse: 0x81
 * Malformed Packet for a string that is not UTF-8, a fault's own (strict.ts).
 */
function malformedCode(err: unknown): number {
  return err instanceof MalformedString ? 0x81 : err instanceof PacketFault ? err.code : 0x82;
}
