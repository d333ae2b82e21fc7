/**
 * One conformance suite run against every balancing policy (what any policy
 * must do), then what each one promises of its own.
 */
import assert from "node:assert/strict";
import { type Candidate, createPolicy, POLICY_NAMES } from "../roles/balancer/mod.ts";
import { prng } from "./helpers/raw.ts";

/** A fake backend: a name, in rotation or not, a load and a capacity. */
class Fake implements Candidate {
  up = true;
  inflight = 0;
  constructor(readonly name: string, public capacity = 1000) {}
  get available(): boolean {
    return this.up && this.inflight < this.capacity;
  }
}

function fakes(n: number): Fake[] {
  return Array.from({ length: n }, (_, i) => new Fake(`b${i + 1}`));
}

for (const name of POLICY_NAMES) {
  const make = () => createPolicy(name, prng(42));

  Deno.test(`${name}: pick() returns undefined when no backend is available`, () => {
    const policy = make();
    assert.equal(policy.pick([]), undefined);
    const list = fakes(3);
    list[0].up = false;
    list[1].inflight = list[1].capacity;
    list[2].up = false;
    for (let i = 0; i < 10; i++) assert.equal(policy.pick(list), undefined);
  });

  Deno.test(`${name}: pick() never returns a backend that is out or full`, () => {
    const policy = make();
    const list = fakes(5);
    list[1].up = false;
    list[3].inflight = list[3].capacity;
    for (let i = 0; i < 200; i++) {
      const b = policy.pick(list)!;
      assert.ok(b.available, `picked ${b.name}`);
      assert.ok(b !== list[1] && b !== list[3]);
    }
  });

  Deno.test(`${name}: pick() spreads equal backends evenly`, () => {
    const policy = make();
    const list = fakes(4);
    const counts = new Map<string, number>();
    for (let i = 0; i < 4000; i++) {
      const b = policy.pick(list)!;
      counts.set(b.name, (counts.get(b.name) ?? 0) + 1);
    }
    assert.equal(counts.size, 4);
    for (const [b, n] of counts) assert.ok(n > 800 && n < 1200, `${b} got ${n} of 4000`);
  });

  Deno.test(`${name}: pick() avoids the backend asked, unless it is the only one`, () => {
    const policy = make();
    const list = fakes(3);
    for (let i = 0; i < 100; i++) assert.notEqual(policy.pick(list, list[1]), list[1]);
    list[0].up = false;
    list[2].up = false;
    assert.equal(policy.pick(list, list[1]), list[1]);
  });

  Deno.test(`${name}: pick() follows backends joining and leaving`, () => {
    const policy = make();
    let list = fakes(2);
    for (let i = 0; i < 5; i++) policy.pick(list);
    const late = new Fake("late");
    list = [...list, late];
    let sawLate = false;
    for (let i = 0; i < 100; i++) sawLate ||= policy.pick(list) === late;
    assert.ok(sawLate, "a backend that joined is picked");
    list = [late];
    for (let i = 0; i < 10; i++) assert.equal(policy.pick(list), late);
  });

  Deno.test(`${name}: pick() sends load to the only backend with room`, () => {
    const policy = make();
    const list = fakes(3);
    list[0].inflight = list[0].capacity;
    list[2].inflight = list[2].capacity;
    for (let i = 0; i < 20; i++) assert.equal(policy.pick(list), list[1]);
  });
}

Deno.test("round-robin: pick() is a strict rotation, 30 picks over 3 give 10 each in order", () => {
  const policy = createPolicy("round-robin");
  const list = fakes(3);
  const order = Array.from({ length: 30 }, () => policy.pick(list)!.name);
  assert.deepEqual(order, Array.from({ length: 30 }, (_, i) => `b${(i % 3) + 1}`));
});

Deno.test("round-robin: pick() skips a backend that is out and keeps the rotation", () => {
  const policy = createPolicy("round-robin");
  const list = fakes(3);
  list[1].up = false;
  const order = Array.from({ length: 6 }, () => policy.pick(list)!.name);
  assert.deepEqual(order, ["b1", "b3", "b1", "b3", "b1", "b3"]);
  list[1].up = true;
  assert.deepEqual(Array.from({ length: 3 }, () => policy.pick(list)!.name), ["b1", "b2", "b3"]);
});

Deno.test("least-loaded: pick() takes the backend with the fewest in flight", () => {
  const policy = createPolicy("least-loaded");
  const list = fakes(3);
  list[0].inflight = 5;
  list[1].inflight = 2;
  list[2].inflight = 7;
  for (let i = 0; i < 10; i++) assert.equal(policy.pick(list), list[1]);
});

Deno.test("p2c: pick() never takes the most loaded of two", () => {
  const policy = createPolicy("p2c", prng(7));
  const list = fakes(2);
  list[0].inflight = 9;
  for (let i = 0; i < 50; i++) assert.equal(policy.pick(list), list[1]);
});

Deno.test("p2c: pick() rarely takes the most loaded of many", () => {
  const policy = createPolicy("p2c", prng(7));
  const list = fakes(4);
  list.forEach((b, i) => b.inflight = i * 10);
  let heaviest = 0;
  for (let i = 0; i < 1000; i++) if (policy.pick(list) === list[3]) heaviest++;
  assert.equal(heaviest, 0, "the most loaded loses every pair it is in");
});

/** An untried backend (see Candidate.untried): its trial rank and when it joined. */
class Untried extends Fake {
  readonly untried = true;
  constructor(name: string, readonly added: number, public trialRank = 0) {
    super(name);
  }
}

Deno.test("trials: the untried backend of the fewest failed trials that joined first has the next trial; one that joined later waits its turn (hostile43a A6, A14)", () => {
  let clock = 1_000;
  const policy = createPolicy("round-robin", prng(42), () => clock);
  const proven = new Fake("proven");
  const old = [1, 2, 3, 4, 5].map((i) => new Untried(`fake${i}`, i));
  const list: Fake[] = [proven, ...old];
  /** Picks until one is untried: the trial (the proven backend takes the rest). */
  const trial = () => {
    for (let i = 0; i < list.length; i++) {
      const b = policy.pick(list)!;
      if (b instanceof Untried) return b;
    }
    return undefined;
  };
  const first = trial()!;
  assert.equal(first.name, "fake1");
  // It holds its trial and fails it: out for its backoff, then back with rank 1.
  first.up = false;
  first.trialRank = 1;
  clock = 2_000;
  const real = new Untried("real", 1_500);
  list.push(real);
  // Those that waited before the newcomer, in the order they joined (newest first, fakes
  // joining after it took every trial).
  assert.equal(trial()!.name, "fake2");
  old[1].up = false;
  clock = 3_000;
  assert.equal(trial()!.name, "fake3");
  // The fakes' rank grows (their source's or network's failures): the newcomer goes first.
  for (const f of old.slice(3)) f.trialRank = 1;
  old[2].up = false;
  clock = 4_000;
  assert.equal(trial(), real, "the only one of rank 0");
  real.up = false;
  first.up = true;
  first.trialRank = 2;
  clock = 5_000;
  assert.equal(trial()!.name, "fake4", "rank 1, joined first");
  for (const f of old.slice(3)) f.up = false;
  clock = 6_000;
  assert.equal(trial(), first, "only the twice-failed one is left");
});
