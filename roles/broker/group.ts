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
  /**
   * Whether a pick lately found a member proven to read that keeps up
   * (group_delivery.ts memberLoad): members on probation then rank after it.
   */
  proven = false;

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
   * then goes on past the window). That member is kept by identity, not by
   * its place, which joins and leaves shift (38b M2). While every member
   * looked at is UNPROVEN or worse for a message of `bytes` (on trial with
   * its group's budget spent, stalled, unfit), and the fit one is too, it
   * looks on past the window for one that is not: a member on trial is
   * given a message only once a pick has seen that no member keeps up (a
   * look that found none lets the next few picks skip it: at most a window
   * a pick on average). Without `load`: plain rotation.
   * Precondition: the group has members.
   */
  pick(load?: (member: S, bytes: number, group: Group<S>) => number, bytes = 0): S {
    const members = this.members, n = members.length;
    let at = this.#next >= n ? 0 : this.#next;
    if (load !== undefined && n > 1) {
      const start = at;
      let best = at, least = Infinity, k = 0, first = 0, goal = Infinity, fitLoad = NaN;
      for (let i = at; k < n; k++) {
        if (k === PICK_WINDOW) {
          fitLoad = this.#fitLoad(load, bytes);
          goal = this.#goal(least, fitLoad);
        }
        if (k >= PICK_WINDOW && least < goal) break;
        const l = load(members[i], bytes, this);
        if (k === 0) first = l;
        if (l < least) {
          least = l;
          best = i;
          if (l === 0) break;
        }
        if (++i === n) i = 0;
      }
      // A look at every member found none proven and fit: the next picks keep to their window.
      if (k === n && n > PICK_WINDOW && least >= UNPROVEN) this.#blind = n / PICK_WINDOW;
      at = best;
      let next = at + 1;
      if (least > 0 && Number.isNaN(fitLoad)) fitLoad = this.#fitLoad(load, bytes);
      if (least > 0 && fitLoad < least) {
        at = this.#fitAt;
        next = start + k; // the rotation goes on past the window
      } else if (least === 0 || (k > PICK_WINDOW && least < UNPROVEN)) {
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

  /** Picks left that keep to their window: a look past it lately found no member proven and fit. */
  #blind = 0;

  /**
   * How far a pick looks on past its window, given the least load in it
   * and the fit member's: Infinity, not at all (one seen or the fit one is
   * proven and fit, or a look lately found none and one seen can take the
   * message: 37 K4, a scan of a run of unfit members each pick made every
   * publish cost the group's size); else until a load below the goal.
   */
  #goal(least: number, fitLoad: number): number {
    if (least < UNPROVEN || fitLoad < UNPROVEN) return Infinity;
    if (this.#blind > 0) {
      this.#blind--;
      return least < UNFIT || fitLoad < UNFIT ? Infinity : UNFIT;
    }
    return UNPROVEN;
  }

  /** The load of the member a pick last found fit, wherever it stands now; Infinity if it left. */
  #fitLoad(load: (member: S, bytes: number, group: Group<S>) => number, bytes: number): number {
    const fit = this.#fit;
    if (fit === undefined) return Infinity;
    // Joins and leaves shift the members: look it up (once per shift; 38b M2).
    if (this.members[this.#fitAt] !== fit) this.#fitAt = this.members.indexOf(fit);
    if (this.#fitAt >= 0) return load(fit, bytes, this);
    this.#fit = undefined;
    this.#fitAt = 0;
    return Infinity;
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
  /**
   * Deliveries a member left without taking (an MQTT session's in flight
   * unacknowledged, or queued) that went to another member (give_back.ts).
   */
  givenBack: 0,
  /**
   * Deliveries given back MAX_GIVE_BACKS times already (kept.ts) that a
   * member left with again: counted dropped, not given back once more.
   */
  givenUp: 0,
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
 * A load at or past this: the member has not shown that it takes what it
 * is given (on trial or probation with its group's budget spent, or
 * stalled): a pick looks past its window for one that has before giving
 * it a message.
 */
export const UNPROVEN = 2 ** 37;

/**
 * What the members of a group on trial may take in rotation before earning
 * more (1 MiB: enough for one that reads to prove it, four times over), and
 * the share of what proven members take that they earn back (1/8): so
 * members that join and never read, however often, take at most a ninth
 * of a group that has a reader (hostile review 38 L6).
 */
export const TRIAL_BURST = 1024 * 1024;
export const TRIAL_SHARE = 8;
