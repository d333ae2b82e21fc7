/** Unit tests of the binder's core: clock, registry, digest, records. No sockets. */
import assert from "node:assert/strict";
import {
  compareStamps,
  HybridClock,
  isStamp,
  MAX_LOGICAL,
  type Stamp,
} from "../roles/binder/clock.ts";
import { BUCKETS, Digest } from "../roles/binder/digest.ts";
import { type Entry, type Incoming, Registry } from "../roles/binder/registry.ts";
import { parseRecord, parseRegistration, toRecord } from "../roles/binder/records.ts";
import { Verifier } from "../roles/binder/verify.ts";
import { isCode } from "./helpers/rpc.ts";

/** A registry on a fake clock: `time.now` (leases) and `time.wall` (stamps) are set by the test. */
function fakeRegistry(node = "b1", options: { tombstoneMs?: number; maxEntries?: number } = {}) {
  const time = { now: 1000, wall: 1_700_000_000_000 };
  const registry = new Registry({
    clock: new HybridClock(node, () => time.wall),
    now: () => time.now,
    wallNow: () => time.wall,
    ...options,
  });
  return { registry, time };
}

const reg = (port: number, service = "compute", ttlMs = 3000) => ({
  service,
  host: "127.0.0.1",
  port,
  ttlMs,
});

/** What another binder would send for `entry`. */
function incoming(entry: Entry, leftMs = entry.ttlMs): Incoming {
  const { expiresAt: _, ...rest } = entry;
  return { ...rest, leftMs };
}

/** The state a client could observe: live ids with their versions, and tombstones. */
function state(registry: Registry): string[] {
  return [...registry.entries()]
    .map((e) => `${e.id} ${e.stamp.join(",")} ${e.removed ?? "live"}`)
    .sort();
}

Deno.test("HybridClock.now() increases while the wall clock stands still or goes back", () => {
  let wall = 5000;
  const clock = new HybridClock("a", () => wall);
  const a = clock.now();
  const b = clock.now();
  wall = 4000;
  const c = clock.now();
  assert.ok(compareStamps(a, b) < 0 && compareStamps(b, c) < 0);
  wall = 6000;
  assert.deepEqual(clock.now(), [6000, 0, "a"]);
});

Deno.test("HybridClock.observe() makes every later stamp newer than the one observed", () => {
  const clock = new HybridClock("a", () => 1000);
  clock.observe([9000, 7, "z"]);
  const next = clock.now();
  assert.ok(compareStamps(next, [9000, 7, "z"]) > 0);
  assert.equal(clock.drift, 8000);
});

Deno.test("HybridClock carries into the next millisecond when the counter is spent", () => {
  const clock = new HybridClock("a", () => 1000);
  clock.observe([5000, MAX_LOGICAL, "z"]);
  const stamps = [clock.now(), clock.now(), clock.now()];
  assert.deepEqual(stamps, [[5001, 0, "a"], [5001, 1, "a"], [5001, 2, "a"]]);
  for (const s of stamps) assert.ok(isStamp(s), `${s} is a valid stamp`);
  assert.ok(compareStamps(stamps[0], [5000, MAX_LOGICAL, "z"]) > 0);
});

Deno.test("isStamp() refuses a counter past MAX_LOGICAL, as one near 2^53 would freeze replication", () => {
  assert.ok(isStamp([1000, MAX_LOGICAL, "a"]));
  assert.ok(!isStamp([1000, MAX_LOGICAL + 1, "a"]));
  assert.ok(!isStamp([1000, Number.MAX_SAFE_INTEGER, "a"]));
  assert.ok(!isStamp([1000, 1.5, "a"]));
  assert.ok(!isStamp([-1, 0, "a"]));
});

Deno.test("compareStamps() breaks a tie of time and counter by binder id", () => {
  assert.ok(compareStamps([1, 1, "a"], [1, 1, "b"]) < 0);
  assert.equal(compareStamps([1, 1, "a"], [1, 1, "a"]), 0);
  assert.ok(compareStamps([2, 0, "a"], [1, 9, "b"]) > 0);
});

Deno.test("Registry.lookup() hands out a service's instances cyclically in id order", () => {
  const { registry } = fakeRegistry();
  for (const port of [5003, 5001, 5002]) registry.register(reg(port));
  registry.register(reg(6000, "other"));
  const ports = Array.from({ length: 7 }, () => registry.lookup("compute").port);
  assert.deepEqual(ports, [5001, 5002, 5003, 5001, 5002, 5003, 5001]);
  assert.equal(registry.lookup("other").port, 6000);
});

Deno.test("Registry.lookup() of an unknown or emptied service is NOT_FOUND", () => {
  const { registry } = fakeRegistry();
  assert.throws(() => registry.lookup("nope"), isCode("NOT_FOUND"));
  const e = registry.register(reg(5001));
  registry.remove(e.id, "deregistered");
  assert.throws(() => registry.lookup("compute"), isCode("NOT_FOUND"));
  assert.deepEqual(registry.instances("compute"), []);
});

Deno.test("Registry.register() of the same host:port again is one instance with a new version", () => {
  const { registry } = fakeRegistry();
  const first = registry.register(reg(5001));
  const again = registry.register({ ...reg(5001), meta: { zone: "b" } });
  assert.equal(first.id, again.id);
  assert.equal(first.id, "compute@127.0.0.1:5001");
  assert.ok(compareStamps(again.stamp, first.stamp) > 0);
  assert.equal(registry.liveCount, 1);
  assert.deepEqual(registry.lookup("compute").meta, { zone: "b" });
});

Deno.test("Registry leases: renewed instances stay, others stop being handed out and expire", () => {
  const { registry, time } = fakeRegistry();
  const a = registry.register(reg(5001, "compute", 1000));
  registry.register(reg(5002, "compute", 1000));
  time.now += 600;
  registry.renew(a.id);
  time.now += 600; // 5002's lease ran out; 5001 was renewed 600 ms ago
  assert.deepEqual([registry.lookup("compute").port, registry.lookup("compute").port], [
    5001,
    5001,
  ]);
  const changes: Entry[] = [];
  registry.onChange((e, _prev, local) => local && changes.push(e));
  assert.equal(registry.sweep(), 1);
  assert.deepEqual(changes.map((e) => [e.port, e.removed]), [[5002, "expired"]]);
  assert.throws(() => registry.renew("compute@127.0.0.1:5002"), isCode("NOT_FOUND"));
  time.now += 1000;
  assert.throws(() => registry.renew(a.id), isCode("NOT_FOUND"));
  assert.throws(() => registry.lookup("compute"), isCode("NOT_FOUND"));
});

Deno.test("Registry.remove() leaves a tombstone once; an unknown id gives undefined", () => {
  const { registry } = fakeRegistry();
  const e = registry.register(reg(5001));
  const t1 = registry.remove(e.id, "down")!;
  const t2 = registry.remove(e.id, "deregistered")!;
  assert.equal(t1.removed, "down");
  assert.equal(t2, t1);
  assert.equal(registry.remove("compute@127.0.0.1:9", "down"), undefined);
  assert.equal(registry.tombstoneCount, 1);
  assert.equal(registry.liveCount, 0);
});

Deno.test("Registry.merge() keeps the newest version whatever the order of arrival", () => {
  // Changes made on three binders, then delivered to fresh replicas in every order.
  const { registry: a, time } = fakeRegistry("a");
  const { registry: b } = fakeRegistry("b");
  const changes: Entry[] = [];
  for (const r of [a, b]) r.onChange((e, _p, local) => local && changes.push(e));
  const x = a.register(reg(5001));
  time.wall += 5;
  b.merge(incoming(x));
  b.remove(x.id, "down"); // b saw it, then removed it: newer than a's registration
  a.register(reg(5002));
  b.register(reg(5003));
  time.wall += 5;
  a.register(reg(5001)); // a re-registers 5001 concurrently with b's removal
  const orders = [changes, [...changes].reverse(), [...changes].sort(() => 0.5 - Math.random())];
  const results = orders.map((order) => {
    const { registry: c } = fakeRegistry("c");
    for (const e of order) c.merge(incoming(e));
    return state(c);
  });
  assert.deepEqual(results[1], results[0]);
  assert.deepEqual(results[2], results[0]);
  // The last writer by stamp wins: a's re-registration came after b's removal.
  const { registry: c } = fakeRegistry("c");
  for (const e of changes) c.merge(incoming(e));
  assert.equal(c.get(x.id)!.removed, undefined);
  assert.deepEqual(c.instances("compute").map((e) => e.port), [5001, 5002, 5003]);
});

Deno.test("Registry.merge() ignores older and equal versions, and a tombstone beats an older registration", () => {
  const { registry: a } = fakeRegistry("a");
  const { registry: b } = fakeRegistry("b");
  const x = a.register(reg(5001));
  const dead = a.remove(x.id, "deregistered")!;
  assert.equal(b.merge(incoming(dead)), true);
  assert.equal(b.merge(incoming(x)), false); // the registration arrives late
  assert.equal(b.merge(incoming(dead)), false);
  assert.throws(() => b.lookup("compute"), isCode("NOT_FOUND"));
  assert.equal(b.counters.stale, 2);
});

Deno.test("Registry.merge() refuses a version too far ahead of its clock, and keeps its clock", () => {
  const { registry: a, time } = fakeRegistry("a");
  const { registry: b } = fakeRegistry("b");
  const x = a.register(reg(5001));
  const ahead = { ...incoming(x), stamp: [time.wall + 61_000, 0, "a"] as Stamp };
  assert.equal(b.merge(ahead), false);
  assert.equal(b.counters.skewed, 1);
  assert.equal(b.clock.drift, 0);
  assert.equal(b.merge({ ...ahead, stamp: [time.wall + 59_000, 0, "a"] }), true);
});

Deno.test("Registry.merge() takes the lease left at the sender", () => {
  const { registry: a } = fakeRegistry("a");
  const { registry: b, time } = fakeRegistry("b");
  const x = a.register(reg(5001, "compute", 3000));
  b.merge(incoming(x, 500));
  assert.equal(b.leftMs(b.get(x.id)!), 500);
  time.now += 501;
  assert.throws(() => b.lookup("compute"), isCode("NOT_FOUND"));
});

Deno.test("Registry.sweep() collects tombstones their lease and tombstoneMs past their version; merge skips one that old", () => {
  const { registry, time } = fakeRegistry("a", { tombstoneMs: 1000 });
  const x = registry.register(reg(5001)); // a 3 s lease
  const dead = registry.remove(x.id, "deregistered")!;
  time.wall += 3000;
  registry.sweep();
  assert.notEqual(registry.get(x.id), undefined, "kept its lease and tombstoneMs");
  time.wall += 1001;
  registry.sweep();
  assert.equal(registry.get(x.id), undefined);
  assert.equal(registry.merge(incoming(dead)), false);
  assert.equal(registry.get(x.id), undefined);
});

Deno.test("Registry.lookup() hands out a suspect only when no other instance is live", () => {
  const { registry } = fakeRegistry();
  const a = registry.register(reg(5001));
  registry.register(reg(5002));
  registry.setSuspect(a.id, true);
  assert.deepEqual([1, 2, 3].map(() => registry.lookup("compute").port), [5002, 5002, 5002]);
  registry.remove("compute@127.0.0.1:5002", "down");
  assert.equal(registry.lookup("compute").port, 5001);
  registry.setSuspect(a.id, false);
});

Deno.test("Registry.merge() leaves a tenth of maxEntries to registrations made here", () => {
  const { registry } = fakeRegistry("a", { maxEntries: 20 });
  const peer = fakeRegistry("b").registry;
  const from = Array.from({ length: 30 }, (_, i) => peer.register(reg(6000 + i)));
  const taken = from.filter((e) => registry.merge(incoming(e))).length;
  assert.equal(taken, 18);
  assert.equal(registry.counters.overflow, 12);
  // Newer versions of entries it holds are still taken when full.
  const removal = peer.remove(from[0].id, "deregistered")!;
  assert.ok(registry.merge(incoming(removal)));
  // Registrations fill the reserve; beyond it they are OVERLOADED as before. The tombstone is kept:
  // tombstones count against no live-instance cap (r47 R11).
  registry.register(reg(5001));
  registry.register(reg(5002));
  registry.register(reg(5003));
  assert.ok(registry.get(from[0].id)?.removed);
  assert.throws(() => registry.register(reg(5004)), isCode("OVERLOADED"));
});

Deno.test("Registry.register() is not refused for tombstones (a burst of short leases cannot lock servers out)", () => {
  const { registry, time } = fakeRegistry("a", { maxEntries: 100 });
  // 100 leases of 100 ms, expired at once: 100 tombstones kept for a minute.
  for (let i = 0; i < 100; i++) registry.register(reg(7000 + i, "junk", 100));
  time.now += 200;
  registry.sweep();
  assert.equal(registry.tombstoneCount, 100);
  // Servers register within that minute: the tombstones are kept, on a budget of their own.
  const entry = registry.register(reg(5001));
  assert.equal(registry.lookup("compute").id, entry.id);
  for (let i = 0; i < 99; i++) registry.register(reg(5100 + i));
  assert.equal(registry.tombstoneCount, 100);
  assert.equal(registry.counters.tombstones_evicted, 0);
  // Live entries are never evicted: with 100 live, OVERLOADED.
  assert.throws(() => registry.register(reg(5999)), isCode("OVERLOADED"));
  // One more tombstone takes the place of the oldest.
  registry.remove(entry.id, "deregistered");
  assert.equal(registry.tombstoneCount, 100);
  assert.equal(registry.get("junk@127.0.0.1:7000"), undefined);
  assert.equal(registry.counters.tombstones_evicted, 1);
});

Deno.test("Registry.register() beyond maxEntries is OVERLOADED; refreshing an entry is not", () => {
  const { registry } = fakeRegistry("a", { maxEntries: 2 });
  registry.register(reg(5001));
  registry.register(reg(5002));
  assert.throws(() => registry.register(reg(5003)), isCode("OVERLOADED"));
  registry.register(reg(5001));
});

Deno.test("Registry.page() walks every live instance once, in pages bounded by count and weight", () => {
  const { registry, time } = fakeRegistry();
  // Services whose ids sort otherwise than their names ("a1@" < "a@" but "a" < "a1").
  for (const service of ["a", "a1", "b"]) {
    for (let port = 1; port <= 7; port++) {
      registry.register(reg(port, service, port === 7 ? 10 : 3000));
    }
  }
  registry.register({ ...reg(8, "b"), meta: { pad: "x".repeat(1000) } });
  time.now += 100; // the three on port 7 ran out (not swept yet): never listed
  const all = registry.instances().map((e) => e.id);
  assert.equal(all.length, 19);
  assert.deepEqual(
    all.slice(0, 7),
    [1, 2, 3, 4, 5, 6].map((p) => `a@127.0.0.1:${p}`).concat("a1@127.0.0.1:1"),
  );
  for (const [limit, budget] of [[4, Infinity], [100, 500], [1, 1]]) {
    const seen: string[] = [];
    let after: string | undefined;
    let pages = 0;
    do {
      const page = registry.page(undefined, after, limit, budget);
      assert.ok(page.entries.length <= limit && page.entries.length >= 1);
      seen.push(...page.entries.map((e) => e.id));
      after = page.next;
      pages++;
    } while (after !== undefined);
    assert.deepEqual(seen, all, `limit ${limit}, budget ${budget}`);
    assert.ok(pages > 1);
  }
  // One service; and a cursor whose instance has left since.
  assert.deepEqual(registry.page("a1", undefined, 2, Infinity).next, "a1@127.0.0.1:2");
  registry.remove("a1@127.0.0.1:2", "deregistered");
  registry.remove("a1@127.0.0.1:3", "deregistered");
  assert.deepEqual(
    registry.page("a1", "a1@127.0.0.1:2", 2, Infinity).entries.map((e) => e.port),
    [4, 5],
  );
  assert.deepEqual(registry.page(undefined, "a0@x:1", 1, Infinity).entries[0].id, "a1@127.0.0.1:1");
});

Deno.test("Digest summaries are equal for equal states and name the buckets that differ", () => {
  const { registry: a, time } = fakeRegistry("a");
  const { registry: b } = fakeRegistry("b");
  for (let port = 1; port <= 300; port++) b.merge(incoming(a.register(reg(port))));
  assert.deepEqual(a.digest.summary(), b.digest.summary());
  assert.deepEqual(a.digest.differing(b.digest.summary()), []);
  time.wall += 10;
  const changed = a.register(reg(7));
  const diff = a.digest.differing(b.digest.summary());
  assert.equal(diff.length, 1);
  const { ids } = a.digest.page(diff, undefined, 1000);
  assert.ok(ids.includes(changed.id));
});

Deno.test("Digest.page() walks every id of the chosen buckets once, in pages", () => {
  const digest = new Digest();
  const stamp: Stamp = [1, 0, "a"];
  for (let i = 0; i < 500; i++) digest.add(`s@h:${i}`, stamp, undefined);
  const all = Array.from({ length: BUCKETS }, (_, b) => b);
  const seen: string[] = [];
  let cursor;
  let pages = 0;
  do {
    const page = digest.page(all, cursor, 37);
    assert.ok(page.ids.length <= 37);
    seen.push(...page.ids);
    cursor = page.next;
    pages++;
  } while (cursor !== undefined && pages < 100);
  assert.equal(seen.length, 500);
  assert.equal(new Set(seen).size, 500);
});

Deno.test("parseRegistration() names the bad field and applies the default TTL", () => {
  const ok = parseRegistration({ service: "compute", host: "127.0.0.1", port: 5557 }, 3000);
  assert.deepEqual(ok, { service: "compute", host: "127.0.0.1", port: 5557, ttlMs: 3000 });
  const cases: [unknown, RegExp][] = [
    [null, /takes an object/],
    [{ service: "", host: "h", port: 1 }, /"service"/],
    [{ service: "a b", host: "h", port: 1 }, /"service"/],
    [{ service: "s", host: "", port: 1 }, /"host"/],
    [{ service: "s", host: "h", port: 0 }, /"port"/],
    [{ service: "s", host: "h", port: 1.5 }, /"port"/],
    [{ service: "s", host: "h", port: 1, ttl_ms: 5 }, /"ttl_ms"/],
    [{ service: "s", host: "h", port: 1, meta: [1] }, /"meta"/],
    [{ service: "s", host: "h", port: 1, meta: { x: "y".repeat(5000) } }, /"meta"/],
  ];
  for (const [params, message] of cases) {
    assert.throws(() => parseRegistration(params, 3000), (err: unknown) => {
      isCode("BAD_REQUEST")(err);
      assert.match((err as Error).message, message);
      return true;
    });
  }
});

Deno.test("parseRecord() round-trips toRecord() and rejects a forged id or version", () => {
  const { registry } = fakeRegistry();
  const e = registry.register({ ...reg(5001), meta: { w: 1 } });
  const wire = toRecord(e, 2500);
  const back = parseRecord(JSON.parse(JSON.stringify(wire)));
  assert.ok(typeof back !== "string");
  assert.equal(back.id, e.id);
  assert.deepEqual(back.stamp, e.stamp);
  assert.equal(back.leftMs, 2500);
  assert.match(parseRecord({ ...wire, id: "other@h:1" }) as string, /does not match/);
  assert.match(parseRecord({ ...wire, v: [1, "x", "n"] }) as string, /version/);
  assert.match(parseRecord({ ...wire, removed: "gone" }) as string, /removal/);
  assert.match(parseRecord("x") as string, /object/);
});

Deno.test("Verifier.verify() shares one probe between reports of the same instance", async () => {
  const { registry } = fakeRegistry();
  const e = registry.register(reg(5001));
  let release!: (alive: boolean) => void;
  const events: string[] = [];
  const verifier = new Verifier({
    probe: () => new Promise<boolean>((r) => release = r),
    timeoutMs: 1000,
    onStart: () => events.push("start"),
    onEnd: (_e, alive) => events.push(`end ${alive}`),
  });
  const first = verifier.verify(e);
  const second = verifier.verify(e);
  assert.equal(verifier.running, 1);
  release(false);
  assert.deepEqual(await Promise.all([first, second]), [false, false]);
  assert.equal(verifier.probes, 1);
  assert.deepEqual(events, ["start", "end false"]);
});

Deno.test("Verifier.verify() reuses an alive verdict for aliveCacheMs, then probes again", async () => {
  const { registry } = fakeRegistry();
  const e = registry.register(reg(5001));
  let now = 0;
  const verifier = new Verifier({
    probe: () => Promise.resolve(true),
    timeoutMs: 1000,
    aliveCacheMs: 2000,
    now: () => now,
  });
  assert.equal(await verifier.verify(e), true);
  now = 1500;
  assert.equal(await verifier.verify(e), true);
  assert.equal(verifier.probes, 1);
  now = 2500;
  assert.equal(await verifier.verify(e), true);
  assert.equal(verifier.probes, 2);
});

Deno.test("Verifier.verify() rations new probes per source and in all; shared ones are free", async () => {
  const { registry } = fakeRegistry();
  const entries = Array.from({ length: 12 }, (_, i) => registry.register(reg(6000 + i)));
  let now = 0;
  const verifier = new Verifier({
    probe: () => Promise.resolve(true),
    timeoutMs: 1000,
    perSource: 2,
    perSourceBurst: 3,
    perBinder: 5,
    now: () => now,
  });
  const [a, b] = [{}, {}];
  const probes = entries.slice(0, 3).map((e) => verifier.verify(e, a));
  assert.throws(() => verifier.verify(entries[3], a), isCode("OVERLOADED"));
  // Joining a probe that runs, or an "alive" verdict just found, costs nothing.
  verifier.verify(entries[0], a);
  await Promise.all(probes);
  assert.equal(await verifier.verify(entries[1], a), true);
  // The binder's own budget (5) runs out before b's (3).
  verifier.verify(entries[4], b);
  verifier.verify(entries[5], b);
  assert.throws(() => verifier.verify(entries[6], b), /a second$/);
  assert.equal(verifier.probes, 5);
  now = 1000; // a second later: 2 more for a, 5 more in all
  await verifier.verify(entries[6], a);
  await verifier.verify(entries[7], a);
  assert.throws(() => verifier.verify(entries[8], a), /per connection/);
  assert.equal(verifier.probes, 7);
});

Deno.test("Verifier.verify() counts a probe that throws as dead and refuses beyond maxRunning", async () => {
  const { registry } = fakeRegistry();
  const a = registry.register(reg(5001));
  const b = registry.register(reg(5002));
  const verifier = new Verifier({
    probe: (entry) =>
      entry.port === 5001 ? Promise.reject(new Error("boom")) : new Promise(() => {}),
    timeoutMs: 1000,
    maxRunning: 1,
  });
  assert.equal(await verifier.verify(a), false);
  verifier.verify(b);
  const c = registry.register(reg(5003));
  assert.throws(() => verifier.verify(c), isCode("OVERLOADED"));
});

Deno.test("Registry: a tombstone is kept as long as the lease it ended, so a binder that missed the removal cannot bring the instance back (hostile47 Q6)", () => {
  const { registry: a, time } = fakeRegistry("a");
  const { registry: b } = fakeRegistry("b");
  const x = a.register(reg(5001, "zombie", 600_000));
  b.merge(incoming(x));
  a.remove(x.id, "deregistered"); // b is away and misses it
  time.wall += 65_000; // past the 60 s tombstones are kept at the least
  time.now += 65_000;
  a.sweep();
  assert.equal(a.tombstoneCount, 1, "the tombstone outlives 60 s while its lease would still run");
  // b returns with the instance live and sends it (its anti-entropy round): refused.
  const [stale] = [...b.entries()];
  assert.equal(a.merge(incoming(stale, 535_000)), false);
  assert.throws(() => a.lookup("zombie"), isCode("NOT_FOUND"));
  time.wall += 600_000; // past the lease: collected
  time.now += 600_000;
  a.sweep();
  assert.equal(a.tombstoneCount, 0);
});

Deno.test("Registry: an expiry found late is versioned just after the version it ended, so renewals taken meanwhile elsewhere win (hostile47 Q1)", () => {
  const { registry: frozen, time } = fakeRegistry("a");
  const { registry: live, time: liveTime } = fakeRegistry("b");
  const x = live.register(reg(5001, "compute", 3000));
  frozen.merge(incoming(x));
  // `frozen` sleeps 10 s; `live` takes a renewal every second meanwhile.
  for (let i = 0; i < 10; i++) {
    liveTime.wall += 1000;
    liveTime.now += 1000;
    live.renew(x.id);
  }
  time.wall += 10_000;
  time.now += 10_000;
  assert.equal(frozen.sweep(), 1); // it wakes and expires the lease it holds
  const [tombstone] = [...frozen.entries()];
  assert.deepEqual(tombstone.stamp, [1_700_000_000_000, 1, "a"], "just after the version it ended");
  assert.equal(live.merge(incoming(tombstone)), false, "older than the renewals taken since");
  assert.equal(live.lookup("compute").id, x.id);
  const [renewed] = [...live.entries()];
  assert.equal(frozen.merge(incoming(renewed)), true, "and the live version comes back");
});
