/**
 * Each user's share of `--retain-bytes` (as of the topics: an eighth): one
 * user's retained flood keeps only its own newest values within its share,
 * so it can neither hold the whole store (and what `--max-memory` counts of
 * it) nor, holding it, make another user's values the ones evicted.
 */
import assert from "node:assert/strict";
import { hashToken } from "../auth/mod.ts";
import { RetainedStore } from "../roles/broker/retained.ts";
import { COST, type Holder, holder, SIZE } from "./helpers/retained_holders.ts";
import { BrokerCore } from "../roles/broker/core.ts";
import { ALICE, MALLORY, usersBroker } from "./helpers/users_broker.ts";

const MIB = 1024 * 1024;

Deno.test("RetainedStore.set() keeps each user within its share: its own oldest values go", () => {
  const store = new RetainedStore<Holder>(32 * COST, undefined, 4 * COST);
  const config = holder("/a/config");
  store.set(config, "safe", SIZE, 1, "alice");
  const flood = Array.from({ length: 10 }, (_, i) => holder(`/m/${i}`));
  flood.forEach((h, i) => store.set(h, i, SIZE, 2 + i, "mallory"));
  assert.deepEqual(flood.filter((h) => h.retained !== undefined).map((h) => h.name), [
    "/m/6",
    "/m/7",
    "/m/8",
    "/m/9",
  ]);
  assert.equal(config.retained, "safe");
  assert.equal(store.evicted, 6);
  assert.equal(store.ownerEvicted, 6);
  assert.equal(store.bytes, 5 * COST);
  // A value past the share is not kept (as one past the whole budget).
  assert.equal(store.set(holder("/m/big"), "x", 5 * COST, 20, "mallory"), "too_large");
  // No share for values of no one, nor for the shared token's holders.
  const shared = Array.from({ length: 10 }, (_, i) => holder(`/s/${i}`));
  shared.forEach((h, i) => store.set(h, i, SIZE, 30 + i, i % 2 ? "token" : undefined));
  assert.equal(shared.filter((h) => h.retained !== undefined).length, 10);
});

Deno.test("BrokerCore gives each user an eighth of --retain-bytes, or of what --max-memory counts of it", () => {
  const retain = new BrokerCore({ retainBytes: 8 * MIB, maxPending: MIB, maxTopics: 1e6 });
  assert.equal(retain.retained.perOwner, MIB);
  const memory = new BrokerCore({
    retainBytes: 64 * MIB,
    maxPending: MIB,
    maxTopics: 1e6,
    maxMemory: 32 * MIB,
  });
  // --max-memory counts retained values twice: 16 MiB of them, 2 MiB a user.
  assert.equal(memory.retained.perOwner, 2 * MIB);
});

const USERS = `
[users.alice]
token = "${hashToken(ALICE)}"
publish = ["/a"]
subscribe = ["/a"]

[users.mallory]
token = "${hashToken(MALLORY)}"
publish = ["/m"]

[users.admin]
token = "${hashToken("admin-token-0123456789")}"
subscribe = ["/"]
methods = ["sys.*"]
`;

Deno.test({
  name: "attack: with --users, one user's retained flood keeps within its eighth of --retain-bytes",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const b = await usersBroker(USERS, ["--retain-bytes", String(2 * MIB)]);
    try {
      const alice = await b.as(ALICE);
      await alice.call("broker.publish", { topic: "/a/config", value: { mode: "safe" } });
      // 40 × 64 KiB retained by mallory: 1.25 × the whole budget, 10 × her share (256 KiB).
      const mallory = await b.as(MALLORY);
      const big = "x".repeat(64 * 1024);
      for (let i = 0; i < 40; i++) {
        await mallory.call("broker.publish", { topic: `/m/${i}`, value: big, retain: true });
      }
      const admin = await b.as("admin-token-0123456789");
      const stats = await admin.call("sys.stats") as {
        retained: { count: number; bytes: number; evicted: number; user_evicted: number };
      };
      // Hers: three values of 64 KiB and their overhead (a fourth would pass 256 KiB); alice's one.
      assert.equal(stats.retained.count, 4, JSON.stringify(stats.retained));
      assert.ok(stats.retained.bytes <= 2 * MIB / 8 + 1024, JSON.stringify(stats.retained));
      assert.equal(stats.retained.evicted, 37);
      assert.equal(stats.retained.user_evicted, 37);
      assert.deepEqual(await b.firstValue(ALICE, "/a"), { mode: "safe" });
      // Her newest values are the ones kept.
      assert.equal(await b.firstValue("admin-token-0123456789", "/m/39"), big);
    } finally {
      await b.stop();
    }
  },
});
