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
   */
  pick<T extends Candidate>(list: readonly T[], avoid?: T): T | undefined;
}

/** `random` returns a number in [0, 1), as Math.random does (tests pass a seeded one). */
export function createPolicy(name: PolicyName, random: () => number = Math.random): Policy {
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
