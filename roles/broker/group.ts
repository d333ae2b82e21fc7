/**
 * A queue group: the subscriptions of one pattern with one group name,
 * which share its messages, each message to one member (subscriptions.ts
 * keeps them on their pattern's node; fanout.ts says how far behind each
 * member is, so that a pick skips members that are behind).
 */

/** Subscribers that share the messages of one pattern: each message to one member. */
export class Group<S> {
  readonly name: string;
  readonly members: S[] = [];
  /** The sid of its first member: a match begun before it leaves it out. */
  readonly since: number;
  #next = 0;

  constructor(name: string, since = 0) {
    this.name = name;
    this.since = since;
  }

  /**
   * The member to give the next message, in rotation but skipping members
   * that are behind: of the next PICK_WINDOW members from the rotation's
   * place, the first whose `load` is 0, else the one with the least load
   * (the earliest in turn among equals); while every member looked at is
   * UNFIT for a message of `bytes`, it looks on past the window. Without
   * `load`: plain rotation.
   * Precondition: the group has members.
   */
  pick(load?: (member: S, bytes: number) => number, bytes = 0): S {
    const members = this.members, n = members.length;
    let at = this.#next >= n ? 0 : this.#next;
    if (load !== undefined && n > 1) {
      let best = at, least = Infinity;
      // Past the window only while every member seen is UNFIT (hostile review 36 J12).
      for (let k = 0, i = at; k < n && (k < PICK_WINDOW || least >= UNFIT); k++) {
        const l = load(members[i], bytes);
        if (l < least) {
          least = l;
          best = i;
          if (l === 0) break;
        }
        if (++i === n) i = 0;
      }
      at = best;
    }
    this.#next = at + 1;
    return members[at];
  }
}

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
