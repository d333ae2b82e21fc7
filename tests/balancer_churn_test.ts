/**
 * hostile46a G5 without sockets: a worker name whose registrations keep
 * ending young is held out for longer each time (roles/balancer/churn.ts),
 * and a request lost with a dial-in worker that is not steady is sent again
 * without spending one of its attempts, to a steady backend when one has
 * room, and then without taking from the retry budget (redispatch.ts).
 */
import assert from "node:assert/strict";
import {
  Backend,
  createPolicy,
  Dispatcher,
  type Job,
  Pool,
  RetryBudget,
} from "../roles/balancer/mod.ts";
import {
  Churn,
  CHURN_FIRST_MS,
  CHURN_FORGET_MS,
  CHURN_FREE,
  CHURN_MAX_MS,
  CHURN_YOUNG_MS,
} from "../roles/balancer/churn.ts";
import { FREE_RESENDS, steady, STEADY_MS } from "../roles/balancer/redispatch.ts";
import type { DistError } from "../wire/mod.ts";
import { newJob } from "./helpers/balancer.ts";

const RULES = { rise: 2, fall: 3 };

Deno.test("Churn: a name's young ends hold its next registration out, longer each time; a long stay clears them", () => {
  const c = new Churn();
  const a = "10.0.0.1";
  let now = 1_000_000;
  const holds: number[] = [];
  for (let i = 0; i < 12; i++) {
    holds.push(c.hold("w1", a, now));
    c.ended("w1", a, 200, now += 300);
  }
  assert.equal(CHURN_FREE, 2);
  assert.deepEqual(holds.slice(0, 5), [
    0,
    0,
    CHURN_FIRST_MS,
    2 * CHURN_FIRST_MS,
    4 * CHURN_FIRST_MS,
  ]);
  assert.ok(holds.every((h, i) => i === 0 || h >= holds[i - 1]), "never shorter");
  for (let i = 0; i < 10; i++) c.ended("w1", a, 0, now);
  assert.equal(c.hold("w1", a, now), CHURN_MAX_MS, "up to the longest");
  // Another name is not held for it.
  assert.equal(c.hold("w2", a, now), 0);
  // A registration that stayed in rotation CHURN_YOUNG_MS clears the name.
  c.ended("w1", a, CHURN_YOUNG_MS, now);
  assert.equal(c.hold("w1", a, now), 0);
  assert.equal(c.youngEnds("w1", a, now), 0);
  // Young ends are forgotten CHURN_FORGET_MS after the last.
  for (let i = 0; i < 3; i++) c.ended("w3", a, 100, now);
  assert.ok(c.hold("w3", a, now) > 0);
  assert.equal(c.hold("w3", a, now + CHURN_FORGET_MS), 0);
});

Deno.test("Churn: ends are kept by name and source; one that never came into rotation adds none (hostile h47b N1)", () => {
  const c = new Churn();
  let now = 1_000_000;
  // A stranger's registrations of w1, from another source, that ended young in rotation.
  for (let i = 0; i < 8; i++) c.ended("w1", "user:mallory", 200, now += 300);
  assert.ok(c.hold("w1", "user:mallory", now) > 0, "the stranger's own are held");
  assert.equal(c.hold("w1", "user:ops", now), 0, "the real worker's source has a clean start");
  assert.equal(c.hold("w1", "10.0.0.2", now), 0);
  // Registrations that ended before they came into rotation served nobody: no record of their own.
  for (let i = 0; i < 8; i++) c.ended("w2", "10.0.0.2", undefined, now += 30);
  assert.equal(c.youngEnds("w2", "10.0.0.2", now), 0);
  assert.equal(c.hold("w2", "10.0.0.2", now), 0);
  // Nor do they add to a record: they keep it (a flapper held out keeps being held out).
  for (let i = 0; i < 3; i++) c.ended("w3", "10.0.0.3", 100, now);
  const held = c.hold("w3", "10.0.0.3", now);
  assert.ok(held > 0);
  now += CHURN_FORGET_MS - 1;
  c.ended("w3", "10.0.0.3", undefined, now);
  assert.equal(c.hold("w3", "10.0.0.3", now + CHURN_FORGET_MS - 1), held, "kept, not grown");
  assert.equal(c.hold("w3", "10.0.0.3", now + CHURN_FORGET_MS), 0);
});

interface TestJob extends Job {
  id: number;
  error?: DistError;
}

/** `fakes` workers just up, and one server in rotation for a minute when `server`. */
function setup(fakes: number, server: boolean, budget: RetryBudget) {
  const pool = new Pool();
  const now = performance.now();
  const list: Backend[] = [];
  for (let i = 0; i < fakes; i++) {
    const b = new Backend("worker", `127.0.0.1:${4000 + i}`, { capacity: 4, rules: RULES });
    b.name = `flap${i}`;
    list.push(b);
  }
  if (server) list.push(new Backend("server", "s", { capacity: 4, rules: RULES }));
  for (const b of list) {
    b.onConnected();
    b.served = 1; // each has answered: no trials here
    pool.add(b);
  }
  if (server) list.at(-1)!.upAt = now - 60_000;
  const sent: string[] = [];
  const failed: TestJob[] = [];
  const dispatcher = new Dispatcher<TestJob>(pool, createPolicy("round-robin"), {
    send(_job, backend) {
      if (backend.state !== "up") return false;
      sent.push(backend.name);
      return true;
    },
    reject(job, err) {
      job.error = err;
      failed.push(job);
    },
    sizeOf: () => 100,
  }, {
    queueLimit: 100,
    queueBytes: Infinity,
    queueTimeoutMs: 1000,
    retries: 2,
    budget,
    now: () => performance.now(),
  });
  const lose = (j: TestJob) => {
    j.backend!.onLost("connection closed");
    dispatcher.finish(j, "lost");
  };
  return { list, sent, failed, dispatcher, lose };
}

Deno.test("steady(): a worker in rotation STEADY_MS, or CHURN_YOUNG_MS when its name churned", () => {
  const b = new Backend("worker", "x", { capacity: 1, rules: RULES });
  b.onConnected();
  assert.ok(b.upAt > -Infinity, "in rotation");
  // A whole number: performance.now()'s fractions made (t + STEADY_MS) - t fall short of
  // STEADY_MS now and then (CI).
  const t = b.upAt = 1_000_000;
  assert.equal(steady(b, t + STEADY_MS - 1), false);
  assert.equal(steady(b, t + STEADY_MS), true);
  b.churn = 1;
  assert.equal(steady(b, t + STEADY_MS), false);
  assert.equal(steady(b, t + CHURN_YOUNG_MS), true);
});

Deno.test("Dispatcher: a request lost with a worker just up goes to the steady server, spending no attempt and no budget", () => {
  // No budget at all: a retry that took from it would fail "retry budget spent".
  const { sent, failed, dispatcher, lose } = setup(
    3,
    true,
    new RetryBudget({ minPerSecond: 0, ratio: 0 }),
  );
  const j = newJob({ id: 1 }) as TestJob;
  dispatcher.submit(j);
  assert.deepEqual(sent, ["flap0"]);
  lose(j);
  // Before: sent to flap1 (the next in rotation) as its second attempt, or failed for the budget.
  assert.deepEqual(sent, ["flap0", "s"]);
  assert.equal(j.attempts, 1);
  assert.equal(failed.length, 0);
  assert.equal(dispatcher.stats.retries, 1);
});

Deno.test("Dispatcher: losses on workers not steady are free FREE_RESENDS times a request, then count as before", () => {
  const { sent, failed, dispatcher, lose } = setup(
    8,
    false,
    new RetryBudget({ minPerSecond: 100 }),
  );
  const j = newJob({ id: 1 }) as TestJob;
  dispatcher.submit(j);
  for (let i = 0; i < 8 && failed.length === 0; i++) lose(j);
  // 1 send, FREE_RESENDS free resends, then `retries` (2) counted ones: the last loss fails it.
  assert.equal(FREE_RESENDS, 3);
  assert.equal(sent.length, 1 + FREE_RESENDS + 2);
  assert.equal(new Set(sent).size, sent.length, "each to another worker");
  assert.equal(failed.length, 1);
  assert.match(failed[0].error!.message, /tried 3 times \(--retries 2\)/);
});
