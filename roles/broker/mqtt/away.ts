/**
 * MQTT persistent sessions whose clients are away, as the memory guard
 * holds them to their share of max-memory (memory.ts AWAY_SHARE): what each
 * holds (its row, its subscriptions and their pattern nodes, its queues at
 * their buffers, what it keeps in flight), whose it is (its client's source
 * as it left: shares.ts shareSource; a session read back from disk, its
 * user's, else {@link READ_BACK}), and how it gives memory back (its oldest
 * queued deliveries dropped, or the session ended). One read back from disk
 * is spared for a minute (away_share.ts READ_BACK_GRACE_MS): its client was
 * perhaps connected when the broker stopped, and is on its way back.
 */
import { type AwaySession, type AwaySessions as Held, READ_BACK_GRACE_MS } from "../away_share.ts";
import type { MqttSession } from "./session.ts";

/** The source of a session read back from disk without a user (its client's address is not kept). */
export const READ_BACK = "read back";

/** The away sessions, by session. */
export class AwaySessions implements Held {
  readonly #away = new Map<MqttSession, Away>();
  left = 0;

  /** `session`'s client went (or it was read back from disk: `readBack`), from `source`. */
  leave(session: MqttSession, source: string, readBack = false): void {
    const spareUntil = readBack ? performance.now() + READ_BACK_GRACE_MS : 0;
    this.#away.set(session, new Away(session, source, spareUntil));
    this.left++;
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

  readonly spareUntil: number;

  constructor(session: MqttSession, source: string, spareUntil: number) {
    this.#session = session;
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
    return s.counted + s.inflight.keptBytes + this.#subs + this.queuedBytes;
  }

  get queuedBytes(): number {
    let n = 0;
    for (const sub of this.#session.subs) n += sub.queueMemory;
    return n;
  }

  trim(bytes: number): number {
    const s = this.#session;
    // Each subscription trimmed: what left its queue leaves its rows on disk too.
    return s.subscriptions().trim(bytes, (sub) => s.journal?.left(sub));
  }

  evict(why: string): void {
    this.#session.end(why);
  }
}
