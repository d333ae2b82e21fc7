/**
 * Review r47 R1: the Q1 fix stamps an expiry with the wall time its lease ended — the expiring
 * binder's own wall clock. A binder whose clock runs S ms ahead of its peers' still outdates the
 * renewals they took while it was frozen (or cut off) whenever the freeze is shorter than the
 * lease plus S: its tombstone removes a live, renewing instance from every binder (Q1 again).
 * Here: a 3 s lease, B1 1.5 s ahead, frozen 4 s; B2 renewed every second meanwhile.
 *
 * Expected: an expiry never beats a renewal made after the version whose lease it ended, whatever
 * the clocks say (e.g. stamp it just after that version: `[last[0], last[1] + 1, node]`).
 */
import assert from "node:assert/strict";
import { HybridClock } from "../roles/binder/clock.ts";
import { type Entry, type Incoming, Registry } from "../roles/binder/registry.ts";

function fakeRegistry(node: string, skewMs: number) {
  const time = { now: 1000, wall: 1_700_000_000_000 + skewMs };
  const registry = new Registry({
    clock: new HybridClock(node, () => time.wall),
    now: () => time.now,
    wallNow: () => time.wall,
  });
  return { registry, time };
}

function incoming(entry: Entry, leftMs = entry.ttlMs): Incoming {
  const { expiresAt: _, ...rest } = entry;
  return { ...rest, leftMs };
}

Deno.test("r47 R1: a frozen binder whose clock runs 1.5 s ahead does not remove an instance renewed elsewhere", () => {
  const { registry: frozen, time } = fakeRegistry("b1", 1500);
  const { registry: live, time: liveTime } = fakeRegistry("b2", 0);
  const x = live.register({ service: "skew", host: "127.0.0.1", port: 5001, ttlMs: 3000 });
  frozen.merge(incoming(x));
  // b1 is frozen 4 s; b2 takes a renewal every second meanwhile (the server's TTL/3).
  for (let i = 0; i < 4; i++) {
    liveTime.wall += 1000;
    liveTime.now += 1000;
    live.renew(x.id);
  }
  time.wall += 4000;
  time.now += 4000;
  assert.equal(frozen.sweep(), 1, "b1 wakes and expires the lease it holds");
  const [tombstone] = [...frozen.entries()];
  const [renewed] = [...live.entries()];
  assert.equal(
    live.merge(incoming(tombstone)),
    false,
    `b1's expiry ${tombstone.stamp.join(",")} outdated b2's renewal ${renewed.stamp.join(",")}, ` +
      `taken 1 s after the lease b1 expired was renewed`,
  );
  assert.equal(live.lookup("skew").id, x.id);
});
