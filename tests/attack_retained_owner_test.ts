/**
 * One user's retained flood against another user's retained values
 * (hostile review H17): with `--users`, each user's values are a pool of
 * their own, and past `--retain-bytes` the pool holding the most loses its
 * least recently updated value, so a user allowed to publish under `/m`
 * cannot delete `/a/config` by retaining under `/m`.
 */
import assert from "node:assert/strict";
import { RetainedStore } from "../roles/broker/retained.ts";
import { COST, type Holder, holder, SIZE } from "./helpers/retained_holders.ts";
import { ALICE, MALLORY, USERS, usersBroker } from "./helpers/users_broker.ts";

Deno.test("RetainedStore.set() with owners evicts from the pool that holds the most", () => {
  const store = new RetainedStore<Holder>(4 * COST);
  const config = holder("/a/config");
  store.set(config, "safe", SIZE, 1, "alice");
  const flood = Array.from({ length: 10 }, (_, i) => holder(`/m/${i}`));
  flood.forEach((h, i) => store.set(h, i, SIZE, 2 + i, "mallory"));
  assert.equal(config.retained, "safe", "another owner's value stays");
  assert.deepEqual(flood.filter((h) => h.retained !== undefined).map((h) => h.name), [
    "/m/7",
    "/m/8",
    "/m/9",
  ]);
  assert.equal(store.evicted, 7);
  assert.equal(store.bytes, 4 * COST);
  // Once alice holds the most, her oldest goes first.
  const more = Array.from({ length: 3 }, (_, i) => holder(`/a/${i}`));
  more.forEach((h, i) => store.set(h, i, SIZE, 20 + i, "alice"));
  assert.equal(config.retained, undefined);
  assert.equal(flood.filter((h) => h.retained !== undefined).length, 2);
  // A value set by another owner moves to that owner's pool; cleared, it leaves it.
  store.set(flood[9], "now alice's", SIZE, 30, "alice");
  for (const h of [...more, flood[9]]) store.clear(h);
  assert.equal(store.count, 1);
  assert.equal(store.bytes, COST);
});

Deno.test("RetainedStore.set() without owners keeps one update order for all", () => {
  const store = new RetainedStore<Holder>(3 * COST);
  const hs = Array.from({ length: 5 }, (_, i) => holder(`/t/${i}`));
  hs.forEach((h, i) => store.set(h, i, SIZE, i));
  store.set(hs[2], "again", SIZE, 9);
  store.set(hs[4], "again", SIZE, 10);
  assert.deepEqual(hs.filter((h) => h.retained !== undefined).map((h) => h.name), [
    "/t/2",
    "/t/3",
    "/t/4",
  ]);
});

Deno.test({
  name:
    "attack: with --users, one user's retained flood does not evict another user's retained value",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const b = await usersBroker(USERS, ["--retain-bytes", String(1024 * 1024)]);
    try {
      const as = b.as;
      const alice = await as(ALICE);
      await alice.call("broker.publish", { topic: "/a/config", value: { mode: "safe" } });
      // 40 × 64 KiB retained by mallory: 2.5 × the budget.
      const mallory = await as(MALLORY);
      const big = "x".repeat(64 * 1024);
      for (let i = 0; i < 40; i++) {
        await mallory.call("broker.publish", { topic: `/m/${i}`, value: big, retain: true });
      }
      assert.deepEqual(await b.firstValue(ALICE, "/a"), { mode: "safe" });
    } finally {
      await b.stop();
    }
  },
});
