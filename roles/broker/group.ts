/**
 * A queue group: the subscriptions of one pattern with one group name,
 * which share its messages, each message to one member (subscriptions.ts
 * keeps them on their pattern's node; group_delivery.ts says how far behind each
 * member is, so that a pick skips members that are behind).
 */

import { STALLED } from "../../wire/mod.ts";

/** Subscribers that share the messages of one pattern: each message to one member. */
export class Group<S> {
  readonly name: string;
  readonly members: S[] = [];
  /** The sid of its first member: a match begun before it leaves it out. */
  readonly since: number;
  #next = 0;
  /** The member a pick last found keeping up, and where it stood. */
  #fit: S | undefined;
  #fitAt = 0;
  /**
   * Bytes members on trial (their client not yet proven to read: see
   * group_delivery.ts memberLoad) may still be given in rotation: spent by what
   * they are given, earned back by a share of what proven members are.
   */
  trial = TRIAL_BURST;

  constructor(name: string, since = 0) {
    this.name = name;
    this.since = since;
  }

  /**
   * The member to give the next message, in rotation but skipping members
   * that are behind: of the next PICK_WINDOW members from the rotation's
   * place, the first whose `load` is 0; else the one with the least load
   * (the earliest in turn among equals), or the member a pick last found at
   * 0 if its load is less now (hostile review 36 J3: forty members behind
   * in a row must not hide the one that reads from a window; the rotation
   * then goes on past the window). While every member looked at is UNFIT for a
   * message of `bytes`, it looks on past the window. Without `load`: plain
   * rotation.
   * Precondition: the group has members.
   */
  pick(load?: (member: S, bytes: number, group: Group<S>) => number, bytes = 0): S {
    const members = this.members, n = members.length;
    let at = this.#next >= n ? 0 : this.#next;
    if (load !== undefined && n > 1) {
      const start = at;
      let best = at, least = Infinity, k = 0, first = 0;
      // Past the window only while every member seen is UNFIT (hostile review 36 J12), and
      // not when the member last found fit still is (37 K4: a scan of a run of unfit members
      // each pick made every publish cost the group's size).
      for (let i = at; k < n; k++) {
        if (
          k >= PICK_WINDOW &&
          (least < UNFIT || (k === PICK_WINDOW && this.#fitLoad(load, bytes) < UNFIT))
        ) break;
        const l = load(members[i], bytes, this);
        if (k === 0) first = l;
        if (l < least) {
          least = l;
          best = i;
          if (l === 0) break;
        }
        if (++i === n) i = 0;
      }
      at = best;
      let next = at + 1;
      if (least > 0 && this.#fitLoad(load, bytes) < least) {
        at = this.#fitAt;
        next = start + k; // the rotation goes on past the window
      } else if (least === 0 || (k > PICK_WINDOW && least < UNFIT)) {
        this.#fit = members[at];
        this.#fitAt = at;
      }
      // The member whose turn it was is behind (its socket stalled, its queue, its frame limit).
      if (first >= STALLED && at !== start) groupCounts.passedOver++;
      this.#next = next % n;
      return members[at];
    }
    this.#next = at + 1;
    return members[at];
  }

  /** The load of the member a pick last found fit, if it is still where it was; else Infinity. */
  #fitLoad(load: (member: S, bytes: number, group: Group<S>) => number, bytes: number): number {
    const fit = this.#fit;
    return fit !== undefined && this.members[this.#fitAt] === fit
      ? load(fit, bytes, this)
      : Infinity;
  }
}

/** What queue groups' picks did, for `sys.stats` (`queue_groups.passed_over`). */
export const groupCounts = {
  /**
   * Picks that passed over the member whose turn it was as behind: its
   * socket stalled (wire/send_queue.ts), its queue in the broker, or its client's
   * frame limit (another took the message, unless every member was so).
   */
  passedOver: 0,
  /**
   * Group deliveries a member's client refused as past its frame limit
   * that went to another member instead of being lost (hostile review 38 L4).
   */
  rerouted: 0,
};

/**
 * Members of a group that one pick looks at (a few field reads each): a
 * group of more members is looked at a window at a time, from where its
 * rotation stands.
 */
export const PICK_WINDOW = 32;

/**
 * A load at or past this: the member cannot take the message at all (its
 * client's frame limit refused one as large); a pick looks past its window
 * for one that can.
 */
export const UNFIT = 2 ** 41;

/**
 * What the members of a group on trial may take in rotation before earning
 * more (1 MiB: enough for one that reads to prove it, four times over), and
 * the share of what proven members take that they earn back (1/8): so
 * members that join and never read, however often, take at most a ninth
 * of a group that has a reader (hostile review 38 L6).
 */
export const TRIAL_BURST = 1024 * 1024;
export const TRIAL_SHARE = 8;
