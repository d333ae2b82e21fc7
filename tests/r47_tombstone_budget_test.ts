/**
 * Review r47 R11 (roles/binder/registry.ts, tombstones.ts, anti_entropy.ts): tombstones are kept
 * for their lease (up to an hour, hostile47 Q6), so
 * - a flood of hour-long registrations that deregister filled `--max-instances` with tombstones,
 *   and each registration of the flood then took the place of the oldest tombstone: a real
 *   server's removal, whose instance came back from a peer that had missed it;
 * - an older binder (collecting at 60 s) lacks each long-lease tombstone, and was sent it again at
 *   every anti-entropy round for the rest of its lease.
 */
import assert from "node:assert/strict";
import type { Redialer, Requester } from "../wire/mod.ts";
import { antiEntropyRound, diffPage, type Link } from "../roles/binder/anti_entropy.ts";
import { HybridClock } from "../roles/binder/clock.ts";
import type { DigestSummary } from "../roles/binder/digest.ts";
import { parseRecord } from "../roles/binder/records.ts";
import { type Entry, type Incoming, Registry } from "../roles/binder/registry.ts";
import { Trust } from "../roles/binder/trust.ts";

const HOUR = 3_600_000;
const time = { now: 1000, wall: 1_700_000_000_000 };
const make = (node: string, maxEntries?: number) =>
  new Registry({
    clock: new HybridClock(node, () => time.wall),
    now: () => time.now,
    wallNow: () => time.wall,
    maxEntries,
  });
const incoming = (e: Entry, leftMs = e.ttlMs): Incoming => {
  const { expiresAt: _, ...rest } = e;
  return { ...rest, leftMs };
};

Deno.test("r47 R11: a flood of hour-long register + deregister from one source forgets its own tombstones, not a server's removal, and locks no server out", () => {
  const a = make("a", 10);
  const b = make("b", 10);
  // A server's hour-long lease, known to both; deregistered at a while b is away.
  const x = a.register({ service: "db", host: "10.0.0.1", port: 5432, ttlMs: HOUR }, "10.0.0.1");
  b.merge(incoming(x));
  a.remove(x.id, "deregistered");
  time.wall += 1000;
  time.now += 1000;
  // One client: 200 hour-long leases, each deregistered at once (20 times --max-instances).
  for (let port = 1; port <= 200; port++) {
    const e = a.register({ service: "junk", host: "10.0.0.9", port, ttlMs: HOUR }, "10.0.0.9");
    a.remove(e.id, "deregistered");
  }
  // Servers still register, up to the live-instance cap.
  for (let port = 1; port <= 10; port++) {
    a.register({ service: "web", host: "10.0.0.2", port, ttlMs: 3000 }, "10.0.0.2");
  }
  assert.equal(a.instances("web").length, 10);
  assert.ok(a.tombstoneCount <= 10, `${a.tombstoneCount} tombstones`);
  // b comes back and sends what it holds: x, live. Its removal is still known here.
  const [stale] = [...b.entries()];
  a.merge(incoming(stale, HOUR - 10_000));
  assert.throws(
    () => a.lookup("db"),
    "the deregistered db instance is back: the flood evicted its tombstone",
  );
  assert.equal(a.get(x.id)?.removed, "deregistered");
  assert.ok(a.counters.tombstones_evicted >= 190);
});

/**
 * A binder before stop 48, which collects a tombstone 60 s after its version whatever the lease:
 * it merges what it is sent; `collect()` stands for those 60 s (its registry then holds only the
 * live instances), and a tombstone it collected is not taken again (too old for it).
 */
function olderBinder(received: Map<string, number>) {
  const state = { registry: make("old") };
  const gone = new Set<string>();
  const key = (e: { id: string; stamp: readonly unknown[] }) => `${e.id}|${e.stamp.join(",")}`;
  const peer: Requester = {
    request(method: string, params?: unknown) {
      const p = params as { digest: DigestSummary; records: unknown[] };
      if (method === "binder.diff") {
        const page = diffPage(state.registry, p.digest, undefined, 1 << 20);
        const result = { node: "old", ready: true, authenticated: true, ...page };
        return Promise.resolve({ result, by: "old" });
      }
      for (const raw of p.records) {
        const rec = parseRecord(raw) as Incoming;
        received.set(rec.id, (received.get(rec.id) ?? 0) + 1);
        if (!gone.has(key(rec))) state.registry.merge(rec);
      }
      return Promise.resolve({ result: { merged: 0 }, by: "old" });
    },
  };
  const collect = () => {
    const all = [...state.registry.entries()];
    for (const e of all) if (e.removed !== undefined) gone.add(key(e));
    const live = state.registry.instances();
    state.registry = make("old");
    for (const e of live) state.registry.merge(incoming(e));
  };
  return { peer: peer as unknown as Parameters<typeof antiEntropyRound>[2], collect, state };
}

Deno.test("r47 R11: a long-lease tombstone an older peer collected is sent to it once, not at every anti-entropy round", async () => {
  const a = make("a");
  const received = new Map<string, number>();
  const old = olderBinder(received);
  const host = {
    node: "a",
    timeoutMs: 1000,
    registry: a,
    trust: new Trust(),
    budget: 64 * 1024,
    merge: (records: unknown[]) =>
      records.filter((r) => a.merge(parseRecord(r) as Incoming)).length,
    counted: () => {},
    ready: () => {},
  };
  const link: Link = {
    address: "127.0.0.1:1",
    redialer: undefined as unknown as Redialer,
    exchanged: false,
    self: false,
    busy: false,
  };
  const round = () => antiEntropyRound(host, link, old.peer);
  const x = a.register({ service: "db", host: "10.0.0.1", port: 5432, ttlMs: HOUR });
  const y = a.register({ service: "db", host: "10.0.0.1", port: 5433, ttlMs: HOUR });
  await round(); // both live there
  a.remove(x.id, "deregistered");
  await round(); // the removal reaches it
  assert.equal(old.state.registry.get(x.id)?.removed, "deregistered");
  old.collect(); // 60 s on: the older binder forgot it, a's lease-long tombstone is kept
  for (let i = 0; i < 5; i++) await round();
  assert.equal(received.get(x.id), 2, "the collected tombstone was sent again at each round");
  assert.equal(received.get(y.id), 1);
  assert.ok(old.state.registry.isLive(old.state.registry.get(y.id)!));
  // A new version of the instance, and its removal, are each sent (once).
  a.register({ service: "db", host: "10.0.0.1", port: 5432, ttlMs: HOUR });
  await round();
  a.remove(x.id, "deregistered");
  await round();
  assert.equal(old.state.registry.get(x.id)?.removed, "deregistered");
  old.collect();
  for (let i = 0; i < 3; i++) await round();
  assert.equal(received.get(x.id), 4);
});
