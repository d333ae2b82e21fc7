/**
 * Review N11: the balancer's flapping records (roles/balancer/churn.ts, hostile46a G5: a worker
 * name whose registrations keep ending young is held out of rotation, longer each time) were
 * capped at 10,000, the oldest forgotten first, so 10,000 made-up names registered and dropped
 * once each flushed a flapping name's record and undid its hold. Now a source keeps at most 256
 * records (its lightest go first) and, all full, records that hold nothing go before those that
 * hold: the flood cannot push a held name out, from its own source or from 10,000 others.
 * (A unit test of the records the balancer keeps: 10,000 registrations through a balancer, each
 * in rotation before it drops, take minutes.)
 */
import assert from "node:assert/strict";
import { Churn, CHURN_FREE, CHURN_PER_SOURCE } from "../roles/balancer/churn.ts";
import { REMEMBER_MAX } from "../roles/balancer/outlier.ts";

/** `churn` with `name` of `source` flapping: CHURN_FREE + 1 registrations ended young. */
function flapped(churn: Churn, name: string, source: string, now: number): void {
  for (let i = 0; i <= CHURN_FREE; i++) churn.ended(name, source, 200, now + i);
}

Deno.test("churn: made-up names from the flapping name's own source do not undo its hold (N11)", () => {
  const churn = new Churn();
  let now = 1_000;
  flapped(churn, "w1", "10.0.0.7", now);
  const held = churn.hold("w1", "10.0.0.7", now + 10);
  assert.ok(held > 0, "w1 is held out after its young ends");
  // 20,000 made-up names, each registered, in rotation, and dropped young once.
  for (let i = 0; i < 2 * REMEMBER_MAX; i++) churn.ended(`fake-${i}`, "10.0.0.7", 200, now += 1);
  assert.equal(churn.hold("w1", "10.0.0.7", now), held, "w1's hold survives the flood");
  assert.equal(churn.size("10.0.0.7"), CHURN_PER_SOURCE);
  // A flapping made-up name of the flood is held as any: the cap takes the lightest first.
  flapped(churn, "fake-x", "10.0.0.7", now);
  assert.ok(churn.hold("fake-x", "10.0.0.7", now + 10) > 0);
});

Deno.test("churn: made-up names from 10,000 sources do not undo a hold either (N11)", () => {
  const churn = new Churn();
  let now = 1_000;
  flapped(churn, "w1", "worker-user", now);
  const held = churn.hold("w1", "worker-user", now + 10);
  assert.ok(held > 0);
  for (let i = 0; i < 2 * REMEMBER_MAX; i++) {
    churn.ended(`fake-${i}`, `10.1.${i >> 8}.${i & 255}`, 200, now += 1);
  }
  assert.equal(churn.hold("w1", "worker-user", now), held, "w1's hold survives the flood");
  assert.ok(churn.size() <= REMEMBER_MAX, `${churn.size()} records kept`);
});

Deno.test("churn: a source's records past its cap drop its lightest, not another source's", () => {
  const churn = new Churn();
  let now = 1_000;
  churn.ended("w2", "10.0.0.8", 200, now); // One young end: holds nothing yet.
  for (let i = 0; i < 3 * CHURN_PER_SOURCE; i++) {
    churn.ended(`fake-${i}`, "10.0.0.7", 200, now += 1);
  }
  assert.equal(churn.youngEnds("w2", "10.0.0.8", now), 1, "another source's record is kept");
  assert.equal(churn.size("10.0.0.7"), CHURN_PER_SOURCE);
});
