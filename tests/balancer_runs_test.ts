/**
 * Unit tests of the balancer's batches (roles/balancer/runs.ts), without
 * sockets: the requests one client connection hands over in one turn go to
 * one backend while no other is idle (nothing in flight for 1 ms); idle
 * backends still take a request each; a run is at most 64 long.
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
import { DistError } from "../wire/mod.ts";
import { newJob } from "./helpers/balancer.ts";

/** A dispatcher over `n` fake backends whose sends are recorded, shares out of the way. */
function setup(n: number) {
  const clock = { now: 0 };
  const pool = new Pool();
  const backends = Array.from({ length: n }, (_, i) => {
    const b = new Backend("server", `b${i + 1}`, { capacity: 100, rules: { rise: 2, fall: 3 } });
    b.onConnected();
    pool.add(b);
    return b;
  });
  const sent: string[] = [];
  const dispatcher = new Dispatcher<Job>(pool, createPolicy("round-robin"), {
    send(_job, backend) {
      sent.push(backend.name);
      return true;
    },
    reject() {},
    sizeOf: () => 100,
  }, {
    queueLimit: 100,
    queueBytes: Infinity,
    queueTimeoutMs: 1000,
    retries: 2,
    budget: new RetryBudget(),
    contendedShare: 1000,
    now: () => clock.now,
  });
  const job = (flow: object): Job => newJob({ flow });
  /** `count` requests of `flow` in this turn. @returns the backends they went to */
  const batch = (flow: object, count: number): string[] => {
    const from = sent.length;
    const jobs = Array.from({ length: count }, () => job(flow));
    for (const j of jobs) dispatcher.submit(j);
    return sent.slice(from);
  };
  const turn = () => new Promise<void>((resolve) => setTimeout(resolve, 0));
  return { backends, dispatcher, job, batch, turn, clock };
}

Deno.test("runs: idle backends take a request each, even of one connection's batch", () => {
  const { dispatcher, batch } = setup(3);
  assert.deepEqual(batch({}, 4), ["b1", "b2", "b3", "b3"], "then none is idle");
  dispatcher.close(new DistError("UNAVAILABLE", "test over"));
});

Deno.test("runs: with no backend idle, a connection's turn goes to one backend, runs in rotation", async () => {
  const { dispatcher, batch, turn } = setup(3);
  batch({}, 3);
  await turn();
  const [a, b, c] = [{}, {}, {}];
  assert.deepEqual(batch(a, 5), Array(5).fill("b1"));
  assert.deepEqual(batch(b, 2), ["b2", "b2"]);
  assert.deepEqual(batch(a, 2), ["b3", "b3"], "another run, though the same connection");
  await turn();
  assert.deepEqual(batch(c, 80), [...Array(64).fill("b1"), ...Array(16).fill("b2")], "64 at most");
  dispatcher.close(new DistError("UNAVAILABLE", "test over"));
});

Deno.test("runs: a backend idle for 1 ms ends a run and takes the next request", () => {
  const { dispatcher, batch, job, clock } = setup(2);
  const a = {};
  const first = [job(a), job(a)];
  for (const j of first) dispatcher.submit(j);
  assert.deepEqual(batch(a, 2), ["b2", "b2"], "both busy: the run goes on");
  dispatcher.finish(first[0], "answered");
  assert.deepEqual(
    batch(a, 1),
    ["b2"],
    "b1 has just answered: about to get its client's next batch",
  );
  clock.now += 1;
  assert.deepEqual(batch(a, 2), ["b1", "b1"], "b1 idle for 1 ms: the run moves there, and stays");
  dispatcher.close(new DistError("UNAVAILABLE", "test over"));
});

Deno.test("runs: a full or failed backend ends a run", () => {
  const { dispatcher, batch, backends } = setup(2);
  batch({}, 2);
  const a = {};
  backends[0].capacity = 4;
  assert.deepEqual(batch(a, 5), ["b1", "b1", "b1", "b2", "b2"], "b1 full at 4");
  backends[1].onLost("test");
  assert.deepEqual(batch(a, 1), [], "b1 full, b2 out: queued");
  dispatcher.close(new DistError("UNAVAILABLE", "test over"));
});
