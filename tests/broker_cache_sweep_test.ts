/**
 * The sweep of topics' cached targets after a subscription goes
 * (roles/broker/cache_sweep.ts; hostile45b K-B5): a topic published once
 * no longer holds the subscriptions it reached after they end, the caches a
 * removal cannot have made stale stay, and the sweep is bounded work a turn.
 */
import assert from "node:assert/strict";
import { BrokerCore, type Subscription } from "../roles/broker/mod.ts";
import { SWEEP_WORK_PER_TURN } from "../roles/broker/cache_sweep.ts";
import { FakeSink } from "./helpers/broker_sink.ts";

const core = () => new BrokerCore({ retainBytes: 1 << 26, maxPending: 1 << 26, maxTopics: 1e6 });
const turn = () => new Promise((resolve) => setTimeout(resolve, 0));

function subscribe(c: BrokerCore, topic: string): Subscription {
  const { sub } = c.subscribe(new FakeSink(), { topic });
  sub.release();
  return sub;
}

/** The subscriptions the topics' caches hold that are cancelled. */
function heldCancelled(c: BrokerCore): number {
  let n = 0;
  for (const t of c.topics.values()) {
    const cache = t.cache as { plain: Subscription[] } | undefined;
    for (const sub of cache?.plain ?? []) if (sub.cancelled) n++;
  }
  return n;
}

Deno.test("CacheSweep drops the caches of topics published once when their subscriptions end", async () => {
  const c = core();
  const subs = Array.from({ length: 100 }, () => subscribe(c, "/"));
  for (let i = 0; i < 50; i++) c.publish(`/once/${i}`, i, false, 0);
  assert.equal(c.subscriptions.caches.holders, 50);
  assert.ok(c.subscriptions.cacheBytes > 0);
  for (const sub of subs) c.unsubscribe(sub);
  await Promise.resolve(); // the turn's slice, at its end
  assert.equal(heldCancelled(c), 0, "no cache holds a subscription that ended");
  assert.equal(c.subscriptions.caches.holders, 0);
  assert.equal(c.subscriptions.cacheBytes, 0, "what they counted is given back");
  // A publish after finds nobody, and a new subscriber gets the next.
  c.publish("/once/1", 1, false, 0);
  const s = new FakeSink();
  c.subscribe(s, { topic: "/once" }).sub.release();
  c.publish("/once/1", 2, false, 0);
  assert.deepEqual(s.written.map((d) => d.value), [2]);
});

Deno.test("CacheSweep keeps the caches of topics no removal may reach", async () => {
  const c = core();
  const a = subscribe(c, "/a"), b = subscribe(c, "/b/+/x");
  c.publish("/a/1", 1, false, 0);
  c.publish("/b/1/x", 1, false, 0);
  c.unsubscribe(b);
  await turn();
  assert.equal(c.subscriptions.caches.holders, 1);
  assert.equal(c.subscriptions.caches.dropped, 1);
  assert.equal((c.topics.get("/a/1")!.cache as { plain: Subscription[] }).plain[0], a);
  assert.equal(c.topics.get("/b/1/x")!.cache, undefined);
});

Deno.test("CacheSweep does bounded work a turn and covers removals made while it goes", async () => {
  const c = core();
  const all = subscribe(c, "/"), keep = subscribe(c, "/k");
  const n = 3 * SWEEP_WORK_PER_TURN;
  for (let i = 0; i < n; i++) c.publish(`/k/${i}`, i, false, 0);
  assert.equal(c.subscriptions.caches.holders, n);
  c.unsubscribe(all); // every cache is stale
  await Promise.resolve(); // the turn's slice, at its end
  await Promise.resolve();
  const first = c.subscriptions.caches.dropped;
  assert.ok(first > 0 && first <= SWEEP_WORK_PER_TURN, `${first} dropped in the first slice`);
  // Made again meanwhile: holds `keep` only.
  c.publish("/k/0", 0, false, 0);
  c.unsubscribe(keep); // during the pass: the new cache of /k/0 must go too
  for (let i = 0; i < 10 && c.subscriptions.caches.holders > 0; i++) await turn();
  assert.equal(c.subscriptions.caches.holders, 0);
  assert.equal(heldCancelled(c), 0);
  assert.equal(c.subscriptions.cacheBytes, 0);
});
