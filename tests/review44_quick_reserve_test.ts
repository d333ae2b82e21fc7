/**
 * review44 R2: the quick-source exemption of the /24 reserve rule (60dcfba,
 * source_book.ts netRoom) is earned by 8 requests answered within a second
 * (an UNKNOWN_METHOD answer will do) and lasts while none of the source's
 * requests is a second old on a backend. Each of the /24's holding addresses
 * that warms up first is exempt for its first slow requests: 100 such
 * addresses drain the reserve again (hostile42a Y1 back), and a client of
 * another network waits. Same setup as balancer_slots_test.ts.
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

interface TestJob extends Job {
  id: number;
  error?: DistError;
}

/** A dispatcher over `n` backends of `capacity`, flows mapped to sources by `sources`. */
function setup(n: number, capacity: number, options: { share?: number; queueMs?: number } = {}) {
  let now = 1_000_000;
  const clock = { now: () => now, advance: (ms: number) => now += ms };
  const pool = new Pool();
  const backends = Array.from({ length: n }, (_, i) => {
    const b = new Backend("server", `b${i + 1}`, { capacity, rules: { rise: 2, fall: 3 } });
    b.onConnected();
    pool.add(b);
    return b;
  });
  const sources = new Map<object, string>();
  const sent = new Set<TestJob>();
  const failed: TestJob[] = [];
  const dispatcher: Dispatcher<TestJob> = new Dispatcher(pool, createPolicy("round-robin"), {
    send(job) {
      sent.add(job);
      return true;
    },
    reject(job, err) {
      job.error = err;
      failed.push(job);
    },
    sizeOf: () => 100,
  }, {
    queueLimit: 10_000,
    queueBytes: Infinity,
    queueTimeoutMs: options.queueMs ?? 60_000,
    retries: 2,
    budget: new RetryBudget({ minPerSecond: 100 }),
    contendedShare: options.share,
    now: clock.now,
    sourceOf: (flow) => sources.get(flow),
  });
  let next = 1;
  /** A connection from `source`. */
  const conn = (source: string) => {
    const flow = {};
    sources.set(flow, source);
    return flow;
  };
  /** `count` requests of `flow`, submitted. */
  const submit = (flow: object, count: number): TestJob[] =>
    Array.from({ length: count }, () => {
      const job: TestJob = newJob({ id: next++, flow });
      dispatcher.submit(job);
      return job;
    });
  /** Of `jobs`, those sent to a backend (answered or not). */
  const onBackends = (jobs: TestJob[]) => jobs.filter((j) => j.attempts > 0).length;
  const answer = (jobs: TestJob[]) => {
    for (const j of jobs) {
      if (sent.delete(j)) dispatcher.finish(j, "answered");
    }
  };
  return { dispatcher, backends, clock, conn, submit, onBackends, answer, failed };
}

Deno.test("slots: addresses of one /24 that first send 8 quick requests still leave the reserve free", () => {
  // Two backends of 128 slots: 256, 64 of them the reserve.
  const { dispatcher, conn, submit, onBackends, answer } = setup(2, 128);
  const addresses = Array.from({ length: 100 }, (_, i) => conn(`10.9.9.${i + 1}`));
  for (let i = 0; i < 8; i++) for (const a of addresses) answer(submit(a, 1)); // warmed: quick
  for (let i = 0; i < 12; i++) submit(conn(`10.0.1.${i}`), 16);
  const spread = addresses.map((a) => submit(a, 16));
  const theirs = spread.reduce((n, jobs) => n + onBackends(jobs), 0);
  // Cold, they take 13 (balancer_slots_test.ts); the fix says one each, then a minute's wait.
  const legit = submit(conn("10.0.0.1"), 8);
  for (let i = 0; i < 4; i++) answer(legit);
  assert.equal(
    onBackends(legit),
    8,
    `another network's client finds slots (the /24 took ${theirs})`,
  );
  dispatcher.close(new DistError("UNAVAILABLE", "test over"));
});
