/**
 * Balancing policies: which backend takes the next request. One interface,
 * four policies, and one conformance suite (tests/balancer_policies_test.ts)
 * that every policy passes. Policies see only what they need of a backend,
 * so the suite drives them with plain objects.
 */

/** What a policy reads of a backend. */
export interface Candidate {
  /** In rotation with a free slot. */
  readonly available: boolean;
  /** Requests in flight on it now. */
  readonly inflight: number;
  /**
   * Failures among its last answers (success_rate.ts), counted by
   * least-loaded and p2c as requests in flight: a backend that fails at
   * once has none in flight, yet is not the least loaded (hostile35 H3).
   */
  readonly penalty?: number;
  /**
   * Has answered no request while its pool is guarded (a `--service` with
   * more instances than `--max-backends` places, sources.ts): it gets only
   * trial requests while a backend that has answered is in rotation
   * ({@link Guarded}). Undefined counts as false.
   */
  readonly untried?: boolean;
  /** "down": out of rotation (undefined counts as in rotation). */
  readonly state?: string;
  /** Who registered it, as binders tell: untried ones are tried a registrant at a time. */
  readonly registrant?: string;
  /**
   * Untried, how far back its trial comes ({@link nextTrial}): its failed
   * trials, its source's if more. Undefined counts as 0.
   */
  readonly trialRank?: number;
  /** When it joined the pool (the trials' clock, ms; undefined counts as 0). */
  readonly added?: number;
}

/** What least-loaded and p2c compare: requests in flight, and recent failures as many more. */
function load(b: Candidate): number {
  return b.inflight + (b.penalty ?? 0);
}

export const POLICY_NAMES = ["round-robin", "least-loaded", "p2c", "random"] as const;
export type PolicyName = typeof POLICY_NAMES[number];

export interface Policy {
  readonly name: PolicyName;
  /**
   * An available backend of `list`, other than `avoid` unless it is the only
   * one; undefined when none is available. `list` may change between calls.
   * `trial` false: the request may not be a trial ({@link Guarded}: a
   * non-idempotent one goes to a proven backend while one is in rotation).
   */
  pick<T extends Candidate>(list: readonly T[], avoid?: T, trial?: boolean): T | undefined;
}

/**
 * `random` returns a number in [0, 1), as Math.random does (tests pass a
 * seeded one); `now` is the clock of the trials (ms).
 */
export function createPolicy(
  name: PolicyName,
  random: () => number = Math.random,
  now: () => number = () => performance.now(),
): Policy {
  return new Guarded(basePolicy(name, random), basePolicy(name, random), now);
}

/** A trial unanswered this long no longer keeps another from starting (ms). */
export const TRIAL_MS = 1_000;
/**
 * The longest a trial may be held (ms; trials.ts sends it again then, and
 * its backend's slot frees): until then, and {@link TRIAL_MS} more, a held
 * trial keeps the slot (hostile40c V4).
 */
export const TRIAL_MAX_MS = 4_000;

/**
 * Proven first (hostile35 H4): while some backends are untried (see
 * {@link Candidate.untried}; only while the pool is guarded) and one that
 * has answered is in rotation, requests go to those that have answered,
 * and an untried one gets a trial: one request at a time pool-wide (one
 * in flight longer than {@link TRIAL_MS} no longer counts), never a retry
 * (and an untried backend takes no more once one failed: backends.ts). A
 * fake that answers its handshake and health checks but no task thus holds
 * one request now and then, not a share of them all, and a new server
 * answers its trial in milliseconds and is proven ({@link nextTrial} says
 * which is tried next). With none that has answered in rotation,
 * every request goes to the untried ones, as the policy picks. With no
 * untried backend (the usual case) it is the policy alone: one look at the
 * backend picked.
 */
/** How long {@link Guarded}'s list of backends that have answered is kept (ms). */
const ANSWERED_MS = 100;

class Guarded implements Policy {
  readonly name: PolicyName;
  #all: Policy;
  /** The same policy over those that have answered (its own rotation). */
  #proven: Policy;
  #now: () => number;
  #scratch: Candidate[] = [];
  #trial: Candidate | undefined;
  #trialAt = -Infinity;
  /** Those of {@link #listed} that had answered when it was read (see #answeredOf). */
  #answered: Candidate[] = [];
  #listed: readonly Candidate[] | undefined;
  #listedAt = -Infinity;
  /** The trial's backend as it was when {@link #answered} was read. */
  #trialSeen: Candidate | undefined;
  /** No trial looked for before this (see pick). */
  #noTrialUntil = -Infinity;

  constructor(all: Policy, proven: Policy, now: () => number) {
    this.name = all.name;
    this.#all = all;
    this.#proven = proven;
    this.#now = now;
  }

  pick<T extends Candidate>(list: readonly T[], avoid?: T, trial = true): T | undefined {
    // A pool whose every backend had answered when last read stays so (none goes back to
    // untried): no clock read per request (performance.now() is an op).
    if (list === this.#listed && this.#answered.length === list.length) {
      return this.#all.pick(list, avoid);
    }
    const now = this.#now();
    const answered = this.#answeredOf(list, now) as readonly T[];
    if (answered.length === list.length) return this.#all.pick(list, avoid);
    // Mostly answered: the policy's pick over all first, its rotation as it keeps it (as before);
    // mostly untried, not (each pick would walk past them).
    let b: T | undefined;
    if (2 * answered.length >= list.length) {
      b = this.#all.pick(list, avoid);
      if (b === undefined || b.untried !== true) return b;
    }
    const proven = this.#scratch as T[];
    proven.length = 0;
    let inRotation = false;
    for (const c of answered) {
      if (c.untried === true || c.state === "down") continue;
      inRotation = true;
      if (c.available && c !== avoid) proven.push(c);
    }
    if (!inRotation) {
      // None has answered yet: every request is a trial.
      proven.length = 0;
      b ??= this.#all.pick(list, avoid);
      return b === undefined || b.untried !== true ? b : leastTried(list, b, avoid);
    }
    if (avoid === undefined && trial && now >= this.#noTrialUntil && this.#open(now)) {
      // The policy's pick over all: a walk of the pool once per trial, not per request.
      b ??= this.#all.pick(list);
      if (b !== undefined && b.untried === true) {
        proven.length = 0;
        const since = this.#trialAt;
        this.#trialAt = now;
        return this.#trial = nextTrial(list, b, since);
      }
      // No untried one may take a request now (their trial backoffs): not looked for again soon.
      if (!list.some((c) => c.untried === true && c.available)) {
        this.#noTrialUntil = now + ANSWERED_MS;
      }
    }
    const p = this.#proven.pick(proven);
    proven.length = 0;
    if (p !== undefined) return p;
    return avoid !== undefined && avoid.available && avoid.untried !== true ? avoid : undefined;
  }

  /**
   * The backends of `list` that have answered, read again when the pool
   * changes (a new list) and every {@link ANSWERED_MS}: not a walk of the
   * whole pool per request (hostile43a A9: with 1,000 idle registered
   * workers beside the servers, the policy's pick was nearly always
   * untried, and each request walked them all: 3–5× less throughput). One
   * that answered its first request meanwhile joins the rotation that late.
   */
  #answeredOf(list: readonly Candidate[], now: number): readonly Candidate[] {
    const t = this.#trial;
    if (
      list === this.#listed && now - this.#listedAt < ANSWERED_MS &&
      (t === undefined || t.untried === true || t === this.#trialSeen)
    ) return this.#answered;
    // Read again at once when the last trial's backend has answered.
    this.#trialSeen = t;
    this.#listed = list;
    this.#listedAt = now;
    this.#answered = list.filter((c) => c.untried !== true);
    return this.#answered;
  }

  /** Whether a trial may start at `now`. */
  #open(now: number): boolean {
    const t = this.#trial;
    return t === undefined || t.untried !== true || t.inflight === 0 ||
      now - this.#trialAt >= TRIAL_MAX_MS + TRIAL_MS;
  }
}

/**
 * The untried backend a trial goes to: of the available ones with the
 * lowest {@link Candidate.trialRank}, the one that joined first (`b`, the
 * policy's pick, on a tie; `since`, when the last trial began, is not
 * read). A backend that failed its trial (or whose source or network did)
 * thus comes after every one that has not, once its backoff ends, and one
 * that has waited goes before those that joined after it: hostile43a A6
 * and A14, fakes registering after a real worker from fresh addresses, or
 * each from a fresh /24, were always the newest untried and took every
 * trial, a second each, and the real worker never had one. Fakes that
 * were there before it go first, a trial each; their source's second
 * failure, their network's third, or their wider network's third put
 * every one of them behind it (trial_backoff.ts; hostile41a W4, a real
 * worker beside 200 fakes that hold every task).
 */
function nextTrial<T extends Candidate>(list: readonly T[], b: T, _since: number): T {
  let best = b;
  let rank = b.untried === true && b.available ? b.trialRank ?? 0 : Infinity;
  let added = b.added ?? 0;
  for (const c of list) {
    if (c.untried !== true || !c.available) continue;
    const r = c.trialRank ?? 0;
    const a = c.added ?? 0;
    if (r < rank || (r === rank && a < added)) [best, rank, added] = [c, r, a];
  }
  return best;
}

/**
 * An available untried backend of the registrant with the fewest requests
 * in flight on its untried ones (`b`, the policy's pick, on a tie): while
 * none has answered, a registrant holding hundreds of fakes does not get
 * every request while a real server of another waits its turn.
 */
function leastTried<T extends Candidate>(list: readonly T[], b: T, avoid: T | undefined): T {
  const held = new Map<string, number>();
  for (const c of list) {
    if (c.untried !== true) continue;
    const r = c.registrant ?? "";
    held.set(r, (held.get(r) ?? 0) + c.inflight);
  }
  if (held.size <= 1) return b;
  let best = b;
  let least = held.get(b.registrant ?? "")!;
  for (const c of list) {
    if (c.untried !== true || !c.available || c === avoid) continue;
    const n = held.get(c.registrant ?? "")!;
    if (n < least) {
      best = c;
      least = n;
    }
  }
  return best;
}

function basePolicy(name: PolicyName, random: () => number): Policy {
  switch (name) {
    case "round-robin":
      return new RoundRobin();
    case "least-loaded":
      return new LeastLoaded();
    case "p2c":
      return new PowerOfTwo(random);
    case "random":
      return new RandomPick(random);
  }
}

/**
 * Strict rotation: the backend after the last one picked, skipping those
 * that are not available. N requests over k equal backends give each N/k.
 */
class RoundRobin implements Policy {
  readonly name = "round-robin";
  #next = 0;

  pick<T extends Candidate>(list: readonly T[], avoid?: T): T | undefined {
    const n = list.length;
    let fallback: T | undefined;
    for (let k = 0; k < n; k++) {
      const i = (this.#next + k) % n;
      const b = list[i];
      if (!b.available) continue;
      if (b === avoid) {
        fallback = b;
        continue;
      }
      this.#next = i + 1;
      return b;
    }
    return fallback;
  }
}

/** Fewest requests in flight (see {@link load}); ties go round the list, so equal load is a rotation. */
class LeastLoaded implements Policy {
  readonly name = "least-loaded";
  #start = 0;

  pick<T extends Candidate>(list: readonly T[], avoid?: T): T | undefined {
    const n = list.length;
    let best: T | undefined;
    let bestAt = 0;
    let bestLoad = Infinity;
    for (let k = 0; k < n; k++) {
      const i = (this.#start + k) % n;
      const b = list[i];
      if (!b.available || b === avoid) continue;
      const l = load(b);
      if (l < bestLoad) {
        best = b;
        bestAt = i;
        bestLoad = l;
      }
    }
    if (best === undefined) return avoid?.available ? avoid : undefined;
    this.#start = bestAt + 1;
    return best;
  }
}

/** Available backends other than `avoid`, into a reused array. */
function eligible<T extends Candidate>(list: readonly T[], avoid: T | undefined, into: T[]): T[] {
  into.length = 0;
  for (const b of list) if (b.available && b !== avoid) into.push(b);
  return into;
}

/** A policy that picks among the available backends with a random source. */
abstract class RandomPolicy implements Policy {
  abstract readonly name: PolicyName;
  protected readonly random: () => number;
  #scratch: Candidate[] = [];

  constructor(random: () => number) {
    this.random = random;
  }

  pick<T extends Candidate>(list: readonly T[], avoid?: T): T | undefined {
    const c = eligible(list, avoid, this.#scratch as T[]);
    if (c.length === 0) return avoid?.available ? avoid : undefined;
    return c.length === 1 ? c[0] : this.choose(c);
  }

  /** One of `c` (at least two). */
  protected abstract choose<T extends Candidate>(c: T[]): T;
}

/** Power of two choices: two distinct random backends, the less loaded wins. */
class PowerOfTwo extends RandomPolicy {
  readonly name = "p2c";

  protected choose<T extends Candidate>(c: T[]): T {
    const i = Math.floor(this.random() * c.length);
    let j = Math.floor(this.random() * (c.length - 1));
    if (j >= i) j++;
    return load(c[j]) < load(c[i]) ? c[j] : c[i];
  }
}

/** Uniformly at random among the available backends. */
class RandomPick extends RandomPolicy {
  readonly name = "random";

  protected choose<T extends Candidate>(c: T[]): T {
    return c[Math.floor(this.random() * c.length)];
  }
}
