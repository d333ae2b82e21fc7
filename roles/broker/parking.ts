/**
 * Subscriptions parked out of the targets of a QoS 0 publish (hostile
 * review 41b X1's rest). A subscription that would drop any QoS 0 delivery
 * at once — an MQTT persistent session's whose socket holds more than it
 * may (subscriber.ts #lossy), or one whose client is away without
 * `--mqtt-queue-qos0` (mqtt/publish_out.ts queuedRecord) — is marked, and a
 * topic's cached targets for QoS 0 publishes leave it out (matching.ts
 * lossyTargets): a publish no longer looks at each of them to drop it, and
 * its drops are counted by the publish, in one addition per kind. Before,
 * 50 such sessions on `#` cost each honest QoS 0 publish a look at each
 * (about 20 ns: 1.3–1.7 µs of broker CPU a message against 0.4–0.5 with
 * none). Publishes at QoS 1 or 2 still reach them through the topic's
 * whole targets (they are queued, or dropped by the policy, as before).
 *
 * A parked subscription comes back when what parked it is over: its
 * connection's output down to half of what it may hold, or the connection
 * gone (STALLED); its client back (AWAY). One wait per sink and kind,
 * whatever the number of its subscriptions parked.
 */
import type { Sink, Subscription } from "./subscriber.ts";

/** Why a subscription is parked (Subscription.parked): not parked. */
export const NOT_PARKED = 0;
/** Its socket holds more than it may: a QoS 0 delivery is dropped, counted in its `dropped`. */
export const STALLED = 1;
/** Its client is away: a QoS 0 delivery is not to go, counted as the sink counts such. */
export const AWAY = 2;

/**
 * Bumped at each park and unpark (process-wide: brokers in one process only
 * remake their views more often): a topic's QoS 0 targets made at an older
 * one are made again.
 */
export const parking = { generation: 0 };

/** Sinks whose subscriptions are parked, and which, per kind. */
const parked = [new WeakMap<Sink, Subscription[]>(), new WeakMap<Sink, Subscription[]>()];

/** A wait that always passes (a full MQTT window does not hold a lossy delivery). */
export const ALWAYS = (): boolean => true;

/**
 * Parks `sub` as `kind` until its sink has drained to `drained` bytes while
 * `passes` (see Sink.whenDrained), or closed.
 */
export function park(
  sub: Subscription,
  kind: typeof STALLED | typeof AWAY,
  wait: { drained: number; passes: () => boolean },
): void {
  if (sub.parked !== NOT_PARKED || sub.cancelled) return;
  sub.parked = kind;
  parking.generation++;
  const sink = sub.sink;
  const byKind = parked[kind - 1];
  const subs = byKind.get(sink);
  if (subs !== undefined) {
    subs.push(sub);
    return;
  }
  const list = [sub];
  byKind.set(sink, list);
  sink.whenDrained(wait.drained, () => {
    byKind.delete(sink);
    for (const s of list) if (s.parked === kind) s.parked = NOT_PARKED;
    parking.generation++;
  }, wait.passes);
}
