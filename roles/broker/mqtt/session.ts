/**
 * An MQTT session: what outlives one connection when the client asks (3.1.1 clean session 0;
 * MQTT 5 Clean Start 0 with a Session Expiry Interval). It is the {@link Sink} of the client's
 * subscriptions, so they stay in the core while the client is away: deliveries then wait in the
 * subscriptions' queues, within max-pending (drop-oldest, the dropped counted, never silently).
 * Unacknowledged QoS 1 and 2 deliveries are kept (InflightWindow), sent again with DUP when the
 * client is back. With `--data-dir` on disk too (persist.ts, journal.ts); publish_out.ts writes.
 */
import { DistError } from "../../../wire/mod.ts";
import { holdMessage } from "../frames.ts";
import { type Message, PendingBudget, type Sink, type Subscription } from "../subscriber.ts";
import { SubsByFilter } from "./subs_by_filter.ts";
import { userSource } from "../../../auth/mod.ts";
import { shareSource } from "../shares.ts";
import { filterFromMqtt } from "./mapping.ts";
import { publishQos } from "./packets.ts";
import { InflightWindow } from "./inflight.ts";
import { ROW_BYTES, type SessionJournal } from "./journal.ts";
import { QueuedRecord } from "./journal_restore.ts";
import { mqttTopic, qosOf, SKIP_RETAINED } from "./delivery.ts";
import { byOf, type OneCopy } from "./one_copy.ts";
import { DrainWaiters } from "./drain_waiters.ts";
import {
  deliverySize,
  queuedRecord,
  type Resend,
  writeDelivery,
  writeQueued,
  writeResends,
} from "./publish_out.ts";
import type { MqttConnection } from "./connection.ts";
import type { Outbound } from "../../../wire/outbound.ts";
import type { MqttFront } from "./front.ts";
import { askOver, WsStream } from "./ws.ts";
import type { ReadProof } from "../group_proof.ts";
import { KEPT_SHARE, sessionBytes } from "./session_cost.ts";
import { type KeptForm, keptOf, takeOwed } from "./give_back.ts";

/** The last session serial given ({@link MqttSession.serial}). */
let serials = 0;

export class MqttSession implements Sink {
  /**
   * What its connection has pending for its client, beside what its socket holds: its
   * subscriptions' queues and what it keeps of deliveries in flight (both within max-pending).
   */
  readonly queued = new PendingBudget();
  /** A number of its own, for no-local (MqttPayload.origin): no other session has it. */
  readonly serial = ++serials;
  /** The smallest value refused as past the client's Maximum Packet Size (see Sink.refusedBytes). */
  refusedBytes = Infinity;
  readonly clientId: string;
  /** Who made it (the authenticated user): another user's CONNECT does not resume it. */
  readonly owner: string | undefined;
  /** The protocol it speaks (its queued deliveries are encoded for it): 4 or 5. */
  readonly version: number;
  /** Subscriptions by their MQTT filter (made at the first). */
  #subs: SubsByFilter | undefined;
  /** Deliveries in flight: a persistent session's counted in max-pending and max-memory (38 L2). */
  readonly inflight = new InflightWindow((delta, aside) => this.#keptChanged(delta, aside));
  /** Packet ids of QoS 2 publishes received, PUBREL awaited, each with the commit its PUBREC waits for (null: routed, its commit failed: publish_in.ts notKept). */
  qos2In: Map<number, Promise<void> | null | undefined> | undefined;
  #expiry = 0;
  /** Counted in max-memory beside what it keeps in flight: {@link sessionBytes} and its filters' text when persistent. */
  #counted = 0;
  /** Deliveries dropped by the subscriptions it no longer holds. */
  #droppedGone = 0;
  readonly #front: MqttFront;
  #conn: MqttConnection | undefined;
  #ended = false;
  /** When its client went (ms since the epoch), for its row on disk; null while connected. */
  #awayAt: number | null = null;
  /** Whether it has a row on disk to keep up to date. */
  #stored = false;
  #timer: ReturnType<typeof setTimeout> | undefined;
  /** What its queues wait for (made at the first wait: an idle session's every byte counts). */
  #drain: DrainWaiters | undefined;
  /** In flight before the client came back, not sent again yet: past its window, they wait for acks. */
  #resends: readonly Resend[] = NO_RESENDS;
  /** Where a queued delivery is encoded (publish_out.ts queuedRecord). */
  readonly #scratch = { buf: EMPTY };
  /** Its queues and deliveries in flight on disk (`--data-dir`, a persistent session). */
  #journal: SessionJournal | undefined;
  /** Which of its subscriptions carries a publish several match (one_copy.ts; made at the first). */
  oneCopy: OneCopy | undefined;

  constructor(front: MqttFront, clientId: string, owner: string | undefined, version: number) {
    this.#front = front;
    this.clientId = clientId;
    this.owner = owner;
    this.version = version;
  }

  /** Seconds the session is kept after its connection goes (0: it ends with it). */
  get expiry(): number {
    return this.#expiry;
  }

  set expiry(seconds: number) {
    if ((seconds > 0) !== (this.#expiry > 0)) {
      this.#front.sessions.persistentChanged(this, seconds > 0);
    }
    const changed = seconds !== this.#expiry;
    this.#expiry = seconds;
    this.recount();
    if (seconds > 0 && !this.#ended) this.#journal ??= this.#front.sessions.journal(this);
    if (changed) this.save();
  }

  /** Its row on disk is to be written (or deleted): only a session that is, or was, persistent. */
  save(): void {
    if (this.#expiry > 0) this.#stored = true;
    else if (!this.#stored) return;
    this.#front.sessions.save(this);
  }

  /**
   * Its row on disk (`--data-dir`: JSON text), or null when not kept (ended, not persistent): its
   * expiry, when its client left, where its subscriptions' rows are (journal.ts); its
   * subscriptions and deliveries are rows of their own.
   */
  row(): string | null {
    if (this.#ended || this.#expiry === 0) return null;
    const journal = this.#journal;
    return JSON.stringify({
      owner: this.owner ?? null,
      source: this.#front.sessions.away.sourceOf(this),
      version: this.version,
      expiry: this.#expiry,
      away: this.#awayAt,
      subsAt: journal?.subsAt,
      no: journal?.no,
      copying: journal?.copying,
      copied: journal?.copied,
    });
  }

  /** Read back from disk: a subscription as it was (its retained values again only if `snapshot`). */
  restore(filter: string, data: number, snapshot = false): void {
    const f = filterFromMqtt(filter, this.version === 5);
    const { sub } = this.#front.core.subscribe(this, {
      topic: f.pattern,
      group: f.group,
      exact: f.exact,
      policy: "drop-oldest",
      // Its user's share (its address is not kept), not refused by it: it was taken within it.
      source: userSource(this.owner),
      restored: true,
    });
    // Skipped: the snapshot a new subscription gets (its client had it), unless it was going out.
    sub.data = data + ((data & SKIP_RETAINED) === 0 && !snapshot ? SKIP_RETAINED : 0);
    this.subscriptions().set(filter, sub);
    sub.release();
  }

  /** Read back from disk, its client away (from `source`): it ends after `ms` unless it comes back. */
  awaitClient(ms: number, awayAt: number, source: string | undefined): void {
    this.#awayAt = awayAt;
    this.#front.sessions.away.readBack(this, source);
    const timer = setTimeout(() => this.end("expired"), Math.max(0, ms));
    Deno.unrefTimer(timer);
    this.#timer = timer;
  }

  /** Its queues and deliveries in flight on disk, if they are kept there. */
  get journal(): SessionJournal | undefined {
    return this.#journal;
  }

  get connection(): MqttConnection | undefined {
    return this.#conn;
  }

  /** Deliveries its subscriptions dropped (past max-pending, while away or slow). */
  get dropped(): number {
    let n = this.#droppedGone;
    for (const sub of this.#subs?.values() ?? []) n += sub.dropped;
    return n;
  }

  /** A connection takes the session: what was in flight goes again (DUP), then the queues. */
  attach(conn: MqttConnection): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#conn = conn;
    this.#awayAt = null;
    this.#front.sessions.away.back(this);
    this.save();
    const { publishes, lost } = this.inflight.resend();
    this.#front.undeliverable += lost;
    // None (the usual): the shared empty list, not one of its own.
    this.#resends = publishes.length > 0 ? publishes : NO_RESENDS;
    this.#sendResends();
    this.#drain?.wake();
  }

  /** Sends again what was in flight, as far as the client's window goes (MQTT 5 §4.9). */
  #sendResends(): void {
    const conn = this.#conn;
    if (conn !== undefined && this.#resends.length > 0) {
      this.#resends = writeResends(this, conn, this.#resends);
    }
  }

  /** Its connection went: the session ends, or waits `expiry` seconds for the client. */
  detach(conn: MqttConnection): void {
    if (this.#conn !== conn) return;
    this.#conn = undefined;
    this.#resends = NO_RESENDS;
    if (this.#expiry === 0 || this.#ended) return this.end("its connection closed");
    this.#awayAt = Date.now();
    this.recount(); // its QoS 2 ids awaiting PUBREL, as it leaves them
    this.#front.sessions.away.leave(this, shareSource(conn.source));
    this.save();
    const timer = setTimeout(() => this.end("expired"), this.#expiry * 1000);
    // A session waiting for its client does not keep the process up.
    Deno.unrefTimer(timer);
    this.#timer = timer;
  }

  /** Ends the session: its subscriptions leave the core, what was pending is freed. */
  end(why: string): void {
    if (this.#ended) return;
    this.#ended = true;
    // At shutdown what it holds stays on disk for the restarted broker.
    const journal = this.#journal;
    this.#journal = undefined;
    // Its row goes first (a kill between the commits then leaves rows of no session, not fewer).
    this.expiry = 0;
    if (why !== "shutdown") journal?.clear();
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    // What its queue groups gave it and it did not take goes to other members (give_back.ts).
    const front = this.#front, owed = why === "shutdown" ? [] : takeOwed(this, front);
    for (const sub of this.#subs?.values() ?? []) this.unsubscribe(sub);
    for (const sub of this.#subs?.leaving ?? []) sub.cancel();
    this.#subs = undefined;
    this.inflight.clear();
    front.giveBacks.add(owed);
    this.save();
    front.sessions.ended(this, why);
    this.#drain?.wake();
  }

  /** Takes a subscription out of the core, keeping its drop count; `drain`: after what it queued. */
  unsubscribe(sub: Subscription, drain = false): void {
    const gone = () => {
      this.#droppedGone += sub.dropped;
      this.#journal?.forget(sub);
    };
    if (!drain || sub.queued === 0) return void (this.#front.core.unsubscribe(sub), gone());
    this.#journal?.unlist(sub);
    this.#subs!.drainOut(sub, (drained) => this.#front.core.unsubscribe(sub, drained), gone);
  }

  /** Its subscriptions (none made for asking). */
  get subs(): Iterable<Subscription> {
    return this.#subs?.values() ?? [];
  }

  /** What it is counted at in max-memory beside what it keeps in flight (see recount). */
  get counted(): number {
    return this.#counted;
  }

  /** Its subscriptions by MQTT filter (made at the first). */
  subscriptions(): SubsByFilter {
    return this.#subs ??= new SubsByFilter(() => this.recount());
  }

  /**
   * Counts it in max-memory (and its user's share): persistent, at {@link sessionBytes} (filters'
   * text, QoS 2 ids awaiting PUBREL); else at nothing (what it keeps in flight: #keptChanged).
   */
  recount(): void {
    const counted = this.#expiry > 0 && !this.#ended
      ? sessionBytes(this.clientId, this.#subs?.bytes ?? 0, this.qos2In?.size ?? 0)
      : 0;
    if (counted === this.#counted) return;
    this.#front.sessions.charge(this.owner, counted - this.#counted);
    this.#counted = counted;
  }

  /** What it keeps in flight changed by `delta`: held, and (not kept `aside`) pending on its connection. */
  #keptChanged(delta: number, aside: boolean): void {
    if (!aside) this.queued.bytes += delta;
    this.#front.sessions.charge(this.owner, delta);
  }

  /** UNSUBSCRIBE's filters: the UNSUBACK codes (SubsByFilter.unsubscribe). */
  unsubscribeFilters(filters: readonly string[]): number[] {
    const cut = (sub: Subscription, drain: boolean) => this.unsubscribe(sub, drain);
    return this.#subs?.unsubscribe(filters, cut) ?? filters.map(() => 0x11);
  }

  /** Output not yet written (not deliveries in flight: {@link full} bounds them by count). */
  get pendingBytes(): number {
    return this.#conn?.out.pending ?? 0;
  }

  get closed(): boolean {
    return this.#ended;
  }

  /** Its socket, for a queue group to see what its client has not taken (wire/send_queue.ts). */
  get socket(): Outbound | undefined {
    return this.#conn?.out;
  }

  /** What its client's answers showed (see Sink.proof). */
  proof: ReadProof | undefined = undefined;

  /** Over WebSocket a ping its client must echo (see Sink.askRead); over TCP nothing to ask. */
  get askRead(): ((nonce: number, answered: () => void) => number) | undefined {
    const out = this.#conn?.out;
    return out?.conn instanceof WsStream ? (n, a) => askOver(out, n, a) : undefined;
  }

  /**
   * Away, window full, or what it keeps in flight at its part of max-pending ({@link KEPT_SHARE}):
   * deliveries wait in the queues, whose bound counts what is kept (queued.bytes), then drop-oldest.
   */
  get full(): boolean {
    const conn = this.#conn;
    return conn === undefined || this.inflight.size >= conn.window ||
      this.inflight.keptBytes >= this.#front.core.maxPending * KEPT_SHARE;
  }

  /** QoS 0 waits in memory only (not under --mqtt-queue-qos0 with a journal: rows keep it). */
  get lossyLane(): boolean {
    return this.#journal === undefined || this.#front.limits.queueQos0 !== true;
  }

  /** Another of its subscriptions carries the one copy (one_copy.ts): not to queue. */
  skips(msg: Message, sub: Subscription): boolean {
    return byOf(this, msg, sub) === null;
  }

  /** An unsubscribed one delivers what it queued: the others wait (review44 R4). */
  get draining(): boolean {
    return this.#subs?.draining === true;
  }

  /** Whether a publish may match several of its subscriptions: it takes one copy (one_copy.ts). */
  get mergesCopies(): boolean {
    return (this.#subs?.size ?? 0) > 1;
  }

  /** Whether `topic` has an MQTT name (a queue group gives it to a member that has, if not). */
  names(topic: string): boolean {
    return mqttTopic(topic) !== null;
  }

  sizeOf(msg: Message, sub: Subscription): number {
    return deliverySize(this.version, msg, byOf(this, msg, sub) ?? sub); // (`latest` only: not ours)
  }

  write(msg: Message, sub: Subscription): void {
    const by = byOf(this, msg, sub);
    if (by !== null) writeDelivery(this, this.#conn!, msg, by);
  }

  /**
   * The delivery as it waits in a queue; MQTT 5: a Message Expiry as the second it runs out at
   * (since the epoch), made the seconds left when it goes out. Empty when it is not to go.
   */
  encode(msg: Message, sub: Subscription, lane = false): Uint8Array {
    if (msg.value instanceof QueuedRecord) {
      this.#journal?.queued(sub, msg.value.bytes, true);
      return msg.value.bytes;
    }
    const by = byOf(this, msg, sub);
    if (by === null) return EMPTY;
    const record = queuedRecord(this, this.#front, msg, by, this.#scratch);
    if (record.length === 0 || this.#journal === undefined || lane) return record;
    // QoS 0 has no row unless --mqtt-queue-qos0: it may be lost at a kill (queue_rows.ts).
    const row = publishQos(record) > 0 || this.#front.limits.queueQos0 === true;
    this.#journal.queued(sub, record, false, row);
    return record;
  }

  /** A queued delivery's row on disk, counted in its queue (under `--data-dir`). */
  get recordCost(): number {
    return this.#journal === undefined ? 0 : ROW_BYTES;
  }

  /** A queue group's delivery of an MQTT payload is read back from its PUBLISH (give_back.ts). */
  readonly keepOf = keptOf;

  writeEncoded(bytes: Uint8Array, sub: Subscription, kept?: KeptForm): void {
    writeQueued(this, this.#conn!, bytes, this.#journal?.left(sub) ?? false, sub, kept);
  }

  whenDrained(bytes: number, fn: () => void, passes?: () => boolean): void {
    (this.#drain ??= new DrainWaiters(this)).add(bytes, fn, passes);
  }

  /** QoS 0 while connected: not held by a full window, never queued (Sink.lossy). */
  lossy(msg: Message, sub: Subscription): boolean {
    const by = byOf(this, msg, sub);
    return this.#conn !== undefined && by !== null && qosOf(msg, by) === 0;
  }

  lossyRecord(first: number): boolean {
    return first >= 0 && (first & 0x06) === 0;
  }

  slow(_sub: Subscription, err: DistError): void {
    const conn = this.#conn;
    if (conn === undefined) return this.#expiry > 0 ? undefined : this.end(err.message);
    this.#front.slowConsumers++;
    this.#front.warn(conn, `Cutting off ${this.clientId}: ${err.message}`);
    conn.refuse(0x97, err.message);
    if (this.#expiry === 0) this.end(err.message);
  }

  /** Away and persistent: not cut by the memory guard, but held to a share (mqtt/away.ts). */
  get kept(): boolean {
    return this.#conn === undefined && this.#expiry > 0 && !this.#ended;
  }

  topicCreated(): void {}

  hold(msg: Message): void {
    holdMessage(msg);
  }

  /** PUBACK or PUBCOMP: the id is free, the window has room (one for an unknown id is ignored). */
  acked(id: number): void {
    if (!this.inflight.done(id)) return;
    this.#journal?.acked(id);
    if (this.#resends.length > 0) this.#sendResends();
    this.#drain?.wake();
  }

  /** PUBREC: the client has the QoS 2 delivery, PUBREL is owed (false: not in flight). */
  received(id: number): boolean {
    if (!this.inflight.received(id)) return false;
    const journal = this.#journal;
    journal?.sent(id, undefined);
    // PUBREL goes once that row is committed: a kill brought the PUBLISH back (hostile41b X3).
    const out = this.#conn?.out;
    if (journal !== undefined && out !== undefined) journal.sentOnce(out);
    return true;
  }
}

// Shared by every session until it needs its own (an idle session's every byte counts).
const EMPTY = new Uint8Array(0);
const NO_RESENDS: readonly Resend[] = [];
