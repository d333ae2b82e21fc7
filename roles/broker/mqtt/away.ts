/**
 * MQTT persistent sessions whose clients are away, as the memory guard
 * holds them to their share of max-memory (memory.ts AWAY_SHARE): what each
 * holds (its row, its subscriptions and their pattern nodes, its queues at
 * their buffers, what it keeps in flight), whose it is (its client's source
 * as it left: shares.ts shareSource; a session read back from disk, the one
 * its row kept, else its user's, else {@link READ_BACK}), and how it gives memory back (its oldest
 * queued deliveries dropped, then what it keeps in flight, or the session ended). One read back from disk
 * keeps for a minute what it held then (away_share.ts READ_BACK_GRACE_MS):
 * its client was perhaps connected when the broker stopped, and is on its
 * way back.
 */
import { type AwaySession, type AwaySessions as Held, READ_BACK_GRACE_MS } from "../away_share.ts";
import type { MqttSession } from "./session.ts";
import { userSource } from "../../../auth/mod.ts";
import { shareSource } from "../shares.ts";

/** The source of a session read back from a row without one (an older broker's) and without a user. */
export const READ_BACK = "read back";

/** The away sessions, by session. */
export class AwaySessions implements Held {
  readonly #away = new Map<MqttSession, Away>();
  /** Where deliveries given up from what sessions keep in flight are counted (`mqtt.undeliverable`). */
  readonly #lost: { undeliverable: number };
  left = 0;

  constructor(lost: { undeliverable: number } = { undeliverable: 0 }) {
    this.#lost = lost;
  }

  /** `session`'s client went (or it was read back from disk: `readBack`), from `source`. */
  leave(session: MqttSession, source: string, readBack = false): void {
    const spareUntil = readBack ? performance.now() + READ_BACK_GRACE_MS : 0;
    const away = new Away(session, source, spareUntil, this.#lost);
    this.#away.set(session, away);
    // What it held read back: once its queues and what it had in flight are read too (this task).
    if (readBack) queueMicrotask(() => away.readBack = away.heldBytes);
    this.left++;
  }

  /**
   * `session` read back from disk, its client away: from the source its row
   * kept (hostile review 40b U7: one source for every session read back let
   * a single address's sessions outrank many honest ones), else its user's.
   */
  readBack(session: MqttSession, source: string | undefined): void {
    this.leave(session, source ?? userSource(session.owner) ?? READ_BACK, true);
  }

  /** Whose `session` is, to keep in its row: its client's source, or the one it left from. */
  sourceOf(session: MqttSession): string | undefined {
    const conn = session.connection;
    return conn !== undefined ? shareSource(conn.source) : this.#away.get(session)?.source;
  }

  /**
   * The journal is read back: each session read back is spared from now
   * (hostile review 41b X5: its minute ran while 250,000 rows were copied,
   * leaving clients 34 s of it once the port opened).
   */
  readBackDone(): void {
    const until = performance.now() + READ_BACK_GRACE_MS;
    for (const away of this.#away.values()) if (away.spareUntil > 0) away.spareUntil = until;
  }

  /** `session`'s client is back, or the session ended. */
  back(session: MqttSession): void {
    this.#away.delete(session);
  }

  values(): IterableIterator<AwaySession> {
    return this.#away.values();
  }
}

class Away implements AwaySession {
  readonly #session: MqttSession;
  readonly source: string;
  /** Its subscriptions' counted bytes (they do not change while its client is away). */
  readonly #subs: number;
  readonly #lost: { undeliverable: number };

  /** Until when (performance.now()) what it held read back is spared (0: not read back). */
  spareUntil: number;
  /** What it held when read back from disk. */
  readBack = 0;

  constructor(
    session: MqttSession,
    source: string,
    spareUntil: number,
    lost: { undeliverable: number },
  ) {
    this.#session = session;
    this.#lost = lost;
    this.source = source;
    this.spareUntil = spareUntil;
    let n = 0;
    for (const sub of session.subs) n += sub.sourceBytes;
    this.#subs = n;
  }

  get name(): string {
    return this.#session.clientId;
  }

  get heldBytes(): number {
    const s = this.#session;
    return s.counted + this.keptBytes + this.#subs + this.queuedBytes;
  }

  spared(now: number): number {
    return now < this.spareUntil ? Math.min(this.readBack, this.heldBytes) : 0;
  }

  get keptBytes(): number {
    return this.#session.inflight.keptBytes;
  }

  get keptQos2Bytes(): number {
    return this.#session.inflight.keptQos2Bytes;
  }

  get queuedBytes(): number {
    let n = 0;
    for (const sub of this.#session.subs) n += sub.queueMemory;
    return n;
  }

  trim(bytes: number): number {
    const s = this.#session;
    // Each subscription trimmed: what left its queue leaves its rows on disk too, in the
    // background when many (Store.deleteRange: one delete per row held the loop 8-14 s, 41b X4).
    const freed = s.subscriptions().trim(bytes, (sub) => void s.journal?.left(sub, true));
    // Not while its client is back: what is in flight then is on its way to it (counted dropped
    // and delivered all the same, broker_memory_kept failed 2 CI runs of 4 at stop 42).
    if (freed >= bytes || this.queuedBytes > 0 || s.socket !== undefined) return freed;
    // Then what it keeps in flight, the oldest QoS 1 first, QoS 2 last (it went out once already):
    // its row goes, or says PUBREL is owed (a QoS 2 one). Each is counted lost here, where it is
    // lost: a QoS 2 one's PUBREL completes it unseen (hostile review 43b B8: uncounted before), and
    // a QoS 1 one was counted only if its client came back.
    const journal = s.journal, lost = this.#lost;
    return freed + s.inflight.trim(bytes - freed, (id, released) => {
      if (released) journal?.sent(id, undefined);
      else journal?.acked(id);
      lost.undeliverable++;
    });
  }

  evict(why: string): void {
    this.#session.end(why);
  }
}
