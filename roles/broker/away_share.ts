/**
 * What MQTT persistent sessions whose clients are away may hold of the
 * broker's max-memory ({@link AWAY_SHARE}), and how the memory guard
 * (memory.ts) holds them to it: the source holding the most gives first,
 * squats ended before any queue is trimmed (hostile review 39c R3), what
 * is kept in flight trimmed after, idle sessions ended last (hostile review 40b U1).
 */
import { getLogger } from "@logtape/logtape";
import type { BrokerCore } from "./core.ts";

const log = getLogger(["dist", "broker"]);

/**
 * The part of max-memory that sessions kept for absent clients (MQTT
 * persistent sessions whose clients are away) may hold together: their
 * rows, subscriptions, queued deliveries and what they keep in flight
 * (hostile review 39c R3: away sessions' subscriptions held the whole budget
 * for a day, and the guard cut connected subscribers instead). Within it,
 * what pushed the broker over is not theirs, and they keep it (hostile
 * review 39b Q2).
 */
export const AWAY_SHARE = 0.5;

/** A session kept for an absent client, as the guard holds it to {@link AWAY_SHARE} (mqtt/away.ts). */
export interface AwaySession {
  /** Its client id, for the log. */
  readonly name: string;
  /** Whose it is (shares.ts shareSource): the source holding the most gives first. */
  readonly source: string;
  /** What it holds, as counted in max-memory (its queues at their buffers, slack included). */
  readonly heldBytes: number;
  /** What of it is queued deliveries (what {@link trim} may drop). */
  readonly queuedBytes: number;
  /** What of it is kept in flight (sent, not acknowledged): messages too, dropped after the queued. */
  readonly keptBytes: number;
  /** What of `keptBytes` is QoS 2 (trimmed after every queue and QoS 1: its loss is unseen). */
  readonly keptQos2Bytes: number;
  /**
   * Drops its oldest queued deliveries (counted), then what it keeps in
   * flight, until `bytes` are freed: the bytes freed.
   */
  trim(bytes: number): number;
  /** Ends it (its client's next CONNECT finds no session). */
  evict(why: string): void;
  /**
   * What of it is spared at `now` (performance.now()), though counted: a
   * session read back from disk, whose client may be on its way back after
   * the restart ({@link READ_BACK_GRACE_MS}), keeps what it held when read
   * back, not what it grew to since (hostile review 40b U2). 0: none.
   */
  spared(now: number): number;
}

/**
 * How long a session read back from disk is spared (ms): clients that were
 * connected when the broker stopped are all away when it starts, and come
 * back within seconds; their sessions are not ended for the share meanwhile.
 */
export const READ_BACK_GRACE_MS = 60_000;

/** The sessions kept for absent clients (mqtt/away.ts AwaySessions). */
export interface AwaySessions {
  values(): Iterable<AwaySession>;
  /** How many times a session was left (or read back) away: a count that only grows. */
  readonly left: number;
}

/** Holds away sessions to their share of max-memory (MemoryGuard's, at each sample and shed). */
export class AwayShare {
  /** Bytes of queued deliveries dropped from away sessions to hold them to their share. */
  trimmed = 0;
  /** Away sessions ended to hold them to their share. */
  ended = 0;
  /**
   * What the last full look at away sessions saw: the count then, how many
   * had been left away, and the room they had left within their share. Until
   * the count grows past that room or another session is left away, what
   * they hold cannot have passed it (their queues grow the count as much),
   * so the samples do not look again (but at least every AWAY_LOOK_MS).
   */
  #look = { memory: 0, left: -1, room: 0, at: 0 };

  /**
   * Holds what away sessions hold to {@link AWAY_SHARE} of the budget: while
   * they hold more, the source whose sessions hold the most gives first
   * (every loopback address one source, as in shares.ts). Within it, a
   * squat (hostile review 39c R3) is ended, the largest first; then queues
   * are trimmed, the largest down to the next one's (drop-oldest, counted);
   * then a session with nothing to drop is ended (see `rank`). A session
   * read back gives only what it grew to since (hostile review 40b U2).
   * Looked at only while the broker counts more than the share in all.
   */
  keep(core: BrokerCore, away: AwaySessions | undefined): void {
    const share = core.maxMemory * AWAY_SHARE;
    const memory = core.memoryBytes;
    if (away === undefined || share === Infinity || memory <= share) return;
    const look = this.#look, now = performance.now();
    if (
      look.left === away.left && memory <= look.memory + look.room && now < look.at + AWAY_LOOK_MS
    ) return;
    let total = 0;
    for (const session of away.values()) total += session.heldBytes;
    this.#look = { memory, left: away.left, room: share - total, at: now };
    if (total <= share) return;
    const sources = new Map<string, Holder>();
    const floor = Math.max(SQUAT_FLOOR, share / SQUAT_PART);
    for (const session of away.values()) {
      const entry = rank(session, session.spared(now), floor);
      if (entry === undefined) continue;
      let source = sources.get(session.source);
      if (source === undefined) sources.set(session.source, source = { rank: 0, sessions: [] });
      source.rank += entry.held;
      source.sessions.push(entry);
    }
    // Ascending: the one holding the most is last.
    const order = [...sources.values()].sort((a, b) => a.rank - b.rank);
    for (const source of order) source.sessions.sort((a, b) => a.rank - b.rank);
    let trimmed = 0;
    const ended: string[] = [];
    for (let steps = 0; total > share && order.length > 0 && steps < MOST_STEPS; steps++) {
      const source = order.pop()!;
      const entry = source.sessions.pop()!;
      const { session, held } = entry;
      let left = 0;
      if (entry.room === 0) {
        session.evict("ended to keep away sessions within their share of max-memory");
        ended.push(session.name);
      } else {
        // Down to the next one's (queues water-filled), in steps of at least an eighth of what is over.
        const next = source.sessions.at(-1)?.held ?? 0;
        const over = total - share;
        const freed = session.trim(Math.min(entry.room, over, Math.max(held - next + 1, over / 8)));
        trimmed += freed;
        left = session.heldBytes;
        // Nothing more to drop: ranked anew (ended, or spared, once the queues are water-filled).
        const again = rank(session, entry.spared, floor, freed === 0);
        if (again !== undefined) placeBy(source.sessions, again);
      }
      total -= held - left;
      source.rank -= held - left;
      if (source.sessions.length > 0) placeBy(order, source);
    }
    // Looked again at the next sample, from what is left.
    this.#look.left = -1;
    this.trimmed += trimmed;
    this.ended += ended.length;
    if (trimmed > 0 || ended.length > 0) {
      log.warn(
        "Away sessions held past their share of max-memory {max}: dropped the oldest {bytes} bytes " +
          "queued for them, ended {n} ({ids}), the largest first",
        {
          max: core.maxMemory,
          bytes: trimmed,
          n: ended.length,
          ids: ended.slice(0, 5).map((id) => id.slice(0, 64)).join(", "),
        },
      );
    }
  }
}

/** What away sessions hold in all (`memory.away_bytes`). */
export function awayBytes(away: AwaySessions | undefined): number {
  let n = 0;
  for (const session of away?.values() ?? []) n += session.heldBytes;
  return n;
}

/**
 * A session's rank is its tier's multiple of this plus what it holds: a
 * squat (4), queues (3), QoS 1 kept in flight (2), QoS 2 kept in flight
 * (1), nothing left to drop (0, ended). Far above any byte count.
 */
const TIER = 2 ** 48;
/**
 * Least a squat's subscriptions and row hold (bytes; at least this part of
 * the share): an honest idle session's few hundred bytes are not a squat
 * (hostile review 40b U1), hostile review 39c R3's thousands of
 * subscriptions are.
 */
const SQUAT_FLOOR = 64 * 1024;
const SQUAT_PART = 256;
/** Longest between two full looks at away sessions while the broker counts past their share (ms). */
const AWAY_LOOK_MS = 1000;
/** Most sessions trimmed or ended in one pass (the rest at the next sample). */
const MOST_STEPS = 4096;

/** A session as AwayShare.keep ranks it: squats first, then queues, then the rest (ended). */
interface Entry {
  session: AwaySession;
  held: number;
  /** What of `held` is spared (a session read back). */
  spared: number;
  /** What dropping its queued deliveries may free (0: ended when its turn comes). */
  room: number;
  rank: number;
}

/**
 * How `session` gives memory back, if it may. A squat (its subscriptions and
 * row the larger part, and large: at least `floor`) is ended before any queue
 * is trimmed; then queues are water-filled, the largest down to the next
 * one's; only after that what sessions keep in flight (sent once already),
 * the largest first, QoS 1 before any QoS 2 (hostile review 43b B8: a client
 * cannot tell a QoS 2 one is gone; its room then stops short of them), and
 * then a session with nothing to drop (idle) is ended (hostile review 40b U1;
 * before, one whose messages were all in flight was ended whole). One read
 * back (`spared`) gives only what it grew to since, and is not ended
 * (undefined: nothing to give).
 */
function rank(
  session: AwaySession,
  spared: number,
  floor: number,
  stuck = false,
): Entry | undefined {
  const held = session.heldBytes, queued = session.queuedBytes;
  const messages = queued + session.keptBytes;
  const room = stuck ? 0 : Math.max(0, Math.min(messages, held - spared));
  if (spared === 0 && held - messages > messages && held - messages >= floor) {
    return { session, held, spared, room: 0, rank: 4 * TIER + held };
  }
  if (room === 0) return spared > 0 ? undefined : { session, held, spared, room, rank: held };
  // Queues and QoS 1 in flight first: QoS 2 only once none is left.
  const first = Math.min(room, messages - session.keptQos2Bytes);
  if (first > 0) {
    return { session, held, spared, room: first, rank: (queued > 0 ? 3 : 2) * TIER + held };
  }
  return { session, held, spared, room, rank: TIER + held };
}

/** A source's away sessions, ascending by rank; the source ranked by what they hold. */
interface Holder {
  rank: number;
  sessions: Entry[];
}

/** Puts `item` in `list` (ascending by `rank`), where it now belongs. */
function placeBy<T extends { rank: number }>(list: T[], item: T): void {
  let lo = 0, hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (list[mid].rank < item.rank) lo = mid + 1;
    else hi = mid;
  }
  list.splice(lo, 0, item);
}
