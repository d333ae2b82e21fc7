/**
 * Places past `--max-backends` (roles/balancer/places.ts, ServerSet.sync)
 * and the proven-first pick (policies.ts), in process: listeners that
 * answer their handshake and health checks stand in for instances, and
 * the backends' counters stand in for requests (hostile35 H4).
 */
import assert from "node:assert/strict";
import { listen, type Listener } from "../wire/mod.ts";
import { Pool } from "../roles/balancer/backends.ts";
import { ServerSet } from "../roles/balancer/sources.ts";
import { Bench, byRegistrant, HOLD_MS, TRIALS } from "../roles/balancer/places.ts";
import { createPolicy } from "../roles/balancer/policies.ts";
import { eventually } from "./helpers/balancer.ts";

const SOURCE = "service compute";

function listeners(n: number): Listener[] {
  return Array.from({ length: n }, (_, i) =>
    listen({
      port: 0,
      role: "server",
      name: `i${i}`,
      onRequest: (method) => method === "sys.ping" ? {} : new Promise(() => {}),
    }));
}

function serverSet(pool: Pool, maxBackends: number): ServerSet {
  return new ServerSet({
    pool,
    rules: { rise: 1, fall: 3 },
    maxInflight: 16,
    maxBackends,
    checkIntervalMs: 500,
    report: () => {},
    dial: { role: "balancer", name: "places-test" },
  });
}

const addressOf = (l: Listener) => `127.0.0.1:${l.addr.port}`;

Deno.test("ServerSet.sync while pressed: a new registrant is dialed at once, a holder is benched, one that served keeps its place", async () => {
  const fakes = listeners(12);
  const [real] = listeners(1);
  const pool = new Pool();
  const servers = serverSet(pool, 4);
  const names = () => pool.list.map((b) => b.address);
  try {
    const addresses = fakes.map(addressOf);
    const registrants = addresses.map(() => "r1");
    servers.sync(SOURCE, addresses, true, registrants);
    assert.equal(pool.guarded, true, "more instances than places: guarded");
    assert.equal(pool.list.length, 4);
    assert.equal(servers.leftOut(SOURCE), 8);
    await eventually(() => Promise.resolve(pool.healthy === 4), 5000, "4 up");

    // A server of another registrant takes an idle untried place at once.
    servers.sync(SOURCE, [...addresses, addressOf(real)], true, [...registrants, "r2"]);
    assert.ok(names().includes(addressOf(real)), names().join());
    assert.equal(pool.list.length, 4);

    // It answers a request: tried. A fake holds its trial (trials.ts judges it, not the hold
    // clock: a slow method is no evidence), then fails it: dropped and benched.
    const realB = pool.list.find((b) => b.address === addressOf(real))!;
    realB.served = 1;
    const holder = pool.list.find((b) => b !== realB)!;
    holder.inflight = 1;
    servers.sync(SOURCE, [...addresses, addressOf(real)], true, [...registrants, "r2"]);
    await new Promise((r) => setTimeout(r, HOLD_MS + 50));
    servers.sync(SOURCE, [...addresses, addressOf(real)], true, [...registrants, "r2"]);
    assert.ok(names().includes(holder.address), "a trial held past HOLD_MS is not judged here");
    holder.inflight = 0;
    holder.trial.fail(performance.now());
    servers.sync(SOURCE, [...addresses, addressOf(real)], true, [...registrants, "r2"]);
    assert.ok(!names().includes(holder.address), "one that failed its trial is dropped");
    assert.ok(names().includes(addressOf(real)), "the one that served stays");
    assert.equal(pool.list.length, 4, "its place went to one waiting");
    // Benched: not dialed again while others wait, however often the list is applied.
    for (let i = 0; i < 20; i++) {
      servers.sync(SOURCE, [...addresses, addressOf(real)], true, [...registrants, "r2"]);
      for (const b of pool.list) if (b !== realB) b.failures = 1;
    }
    assert.ok(!names().includes(holder.address), "benched");
    assert.ok(names().includes(addressOf(real)));

    // No more pressure: every instance dialed again, the pool no longer guarded.
    servers.sync(SOURCE, [addressOf(real), addresses[0]], true, ["r2", "r1"]);
    assert.equal(pool.guarded, false);
    assert.deepEqual(names().toSorted(), [addressOf(real), addresses[0]].toSorted());
  } finally {
    await servers.stop();
    await Promise.all([...fakes, real].map((l) => l.close(0)));
  }
});

Deno.test("ServerSet.sync while pressed: at most TRIALS untried instances dialed, those never dialed first", async () => {
  const many = listeners(TRIALS + 8);
  const pool = new Pool();
  const servers = serverSet(pool, TRIALS + 4);
  const names = () => new Set(pool.list.map((b) => b.address));
  try {
    const addresses = many.map(addressOf);
    const first = addresses.slice(0, TRIALS + 4);
    servers.sync(SOURCE, first, true);
    assert.equal(pool.list.length, TRIALS + 4, "not pressed: all dialed");
    assert.equal(pool.guarded, false);
    // Pressed: idle untried ones go, down to TRIALS.
    servers.sync(SOURCE, addresses, true);
    assert.equal(pool.guarded, true);
    assert.equal(pool.list.length, TRIALS);
    assert.equal(servers.leftOut(SOURCE), 8);
    // Four fail their requests: benched, and their places go to the four never dialed.
    const failed = pool.list.slice(0, 4);
    for (const b of failed) b.failures = 1;
    servers.sync(SOURCE, addresses, true);
    assert.equal(pool.list.length, TRIALS);
    const now = names();
    for (const a of addresses.slice(TRIALS + 4)) {
      assert.ok(now.has(a), `${a} never dialed, not taken`);
    }
    for (const b of failed) assert.ok(!now.has(b.address));
  } finally {
    await servers.stop();
    await Promise.all(many.map((l) => l.close(0)));
  }
});

Deno.test("Bench.order: never dialed first, in a random order, then dialed longest ago", () => {
  const bench = new Bench();
  bench.dialed("a", 10);
  bench.dialed("b", 5);
  const order = (random: () => number) =>
    bench.order([{ key: "a" }, { key: "b" }, { key: "x" }, { key: "y" }], random).map((w) => w.key);
  assert.deepEqual(order(() => 0.5).slice(2), ["b", "a"]);
  const seen = new Set<string>();
  let seed = 1;
  for (let i = 0; i < 20; i++) {
    seen.add(order(() => (seed = (seed * 48271) % 2147483647) / 2147483647)[0]);
  }
  assert.deepEqual([...seen].toSorted(), ["x", "y"]);
  assert.equal(bench.has("a", 0), false);
  assert.equal(bench.add("a", 0), 10_000);
  assert.equal(bench.has("a", 9_999), true);
  assert.equal(bench.has("a", 10_000), false);
  assert.equal(bench.add("a", 10_000), 20_000, "longer each time");
  bench.forget("a");
  assert.equal(bench.add("a", 0), 10_000);
});

Deno.test("byRegistrant: one of each registrant in turn, starting after the last", () => {
  const w = (key: string, registrant: string) => ({ key, registrant });
  const list = [w("a1", "a"), w("a2", "a"), w("a3", "a"), w("b1", "b"), w("c1", "c"), w("c2", "c")];
  assert.deepEqual(byRegistrant(list, undefined).map((x) => x.key), [
    "a1",
    "b1",
    "c1",
    "a2",
    "c2",
    "a3",
  ]);
  assert.deepEqual(byRegistrant(list, "a").map((x) => x.key), ["b1", "c1", "a1", "c2", "a2", "a3"]);
  assert.deepEqual(byRegistrant(list, "c").map((x) => x.key)[0], "a1");
  const one = [w("x", ""), w("y", "")];
  assert.deepEqual(byRegistrant(one, undefined), one);
});

/** A candidate as policies see one; `untried` as a guarded pool's backend says it. */
class Fake {
  state = "up";
  inflight = 0;
  untried: boolean;
  constructor(readonly name: string, untried: boolean) {
    this.untried = untried;
  }
  get available(): boolean {
    return this.state === "up" && (!this.untried || this.inflight === 0);
  }
}

for (const name of ["round-robin", "least-loaded", "p2c", "random"] as const) {
  Deno.test(`${name}, guarded: proven first, one trial at a time, never a retry`, () => {
    let now = 0;
    const policy = createPolicy(name, Math.random, () => now);
    const proven = new Fake("p", false);
    const fakes = Array.from({ length: 20 }, (_, i) => new Fake(`f${i}`, true));
    const list = [...fakes, proven];
    const picks = new Map<string, number>();
    for (let i = 0; i < 200; i++) {
      const b = policy.pick(list)!;
      picks.set(b.name, (picks.get(b.name) ?? 0) + 1);
      if (b.untried) b.inflight++; // a fake holds its trial
    }
    const trials = 200 - (picks.get("p") ?? 0);
    assert.equal(trials, 1, `${trials} trials while one is in flight`);
    // A held trial keeps the slot past a second (hostile40c V4: fakes took one more request
    // each second); a non-idempotent request is never a trial (V2).
    now += 1000;
    for (let i = 0; i < 50; i++) {
      assert.equal(policy.pick(list), proven, "a trial while one is held");
    }
    // Sent again (trials.ts), its slot frees: the next trial may start; a retry is never one.
    for (const f of fakes) f.inflight = 0;
    for (let i = 0; i < 50; i++) assert.equal(policy.pick(list, undefined, false), proven);
    const avoid = proven;
    const retry = policy.pick(list, avoid);
    assert.ok(retry === proven, `a retry went to ${retry?.name}`);
    // A new trial starts as soon as the policy's own pick is an untried one (random and p2c
    // may first pick the proven one: 1 in 21 here; it then takes the request, as before).
    let next = policy.pick(list)!;
    for (let i = 0; i < 50 && !next.untried; i++) next = policy.pick(list)!;
    assert.ok(next.untried, "a new trial");
    // None proven in rotation: the untried take the requests, one each.
    proven.state = "down";
    for (const f of fakes) f.inflight = 0;
    const seen = new Set<string>();
    for (let i = 0; i < 20; i++) {
      const b = policy.pick(list)!;
      assert.ok(b.untried);
      b.inflight++;
      seen.add(b.name);
    }
    assert.equal(seen.size, 20);
    assert.equal(policy.pick(list), undefined, "each holds one: none available");
  });
}
