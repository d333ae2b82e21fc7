/**
 * Hostile review h47b N6 (stop 47's Q6 fix, roles/binder/registry.ts): a
 * deregistration's tombstone is now kept as long as the lease it ended (up
 * to an hour), so a binder that missed the removal cannot bring the
 * instance back. But when the registry is full, a registration made here
 * takes the place of the OLDEST tombstone (insertion order), and an hour's
 * tombstone is older than every short lease's: a client that fills the
 * registry with short leases (each expiring into a 60 s tombstone, counted
 * against no quota once dead) and registers once more evicts the hour-long
 * tombstones first, and the instance Q6 protected comes back from the peer
 * that missed its removal, exactly as before the fix.
 */
import assert from "node:assert/strict";
import { HybridClock } from "../roles/binder/clock.ts";
import { type Entry, type Incoming, Registry } from "../roles/binder/registry.ts";

Deno.test("h47b N6: short leases filling the registry do not evict the tombstone that keeps a deregistered hour-long lease from coming back", () => {
  const time = { now: 1000, wall: 1_700_000_000_000 };
  const make = (node: string) =>
    new Registry({
      clock: new HybridClock(node, () => time.wall),
      now: () => time.now,
      wallNow: () => time.wall,
      maxEntries: 10,
    });
  const a = make("a");
  const b = make("b");
  const incoming = (e: Entry, leftMs = e.ttlMs): Incoming => {
    const { expiresAt: _, ...rest } = e;
    return { ...rest, leftMs };
  };
  // A server's hour-long lease, known to both; deregistered at a while b is away.
  const x = a.register({ service: "db", host: "10.0.0.1", port: 5432, ttlMs: 3_600_000 });
  b.merge(incoming(x));
  a.remove(x.id, "deregistered");
  time.wall += 1000;
  time.now += 1000;
  // A client: short leases (1 s) on other ports, expired into tombstones, filling the registry.
  for (let port = 1; port <= 9; port++) {
    a.register({ service: "junk", host: "10.0.0.9", port, ttlMs: 1000 });
  }
  time.wall += 1500;
  time.now += 1500;
  a.sweep(); // the junk expires: 10 tombstones, the registry full
  assert.equal(a.tombstoneCount, 10);
  // One more registration (the client's): a tombstone makes room.
  a.register({ service: "junk", host: "10.0.0.9", port: 100, ttlMs: 1000 });
  // b comes back and sends what it holds: x, live.
  const [stale] = [...b.entries()];
  a.merge(incoming(stale, 3_590_000));
  assert.throws(
    () => a.lookup("db"),
    "the deregistered db instance is back: its hour-long tombstone was evicted before " +
      "the junk's 60 s ones",
  );
});
