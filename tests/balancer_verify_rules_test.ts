/**
 * The rules of verification by replay (roles/balancer/verify.ts) as plain
 * data: which failures are replayed, which are held, and what a verdict
 * counts.
 */
import assert from "node:assert/strict";
import { Backend, Pool } from "../roles/balancer/backends.ts";
import type { Job } from "../roles/balancer/dispatch_types.ts";
import { Verifier } from "../roles/balancer/verify.ts";
import { newJob } from "./helpers/balancer.ts";

const RULES = { rise: 2, fall: 3 };

function setup() {
  const pool = new Pool();
  const list = ["a", "b", "c"].map((n) => new Backend("server", n, { capacity: 64, rules: RULES }));
  for (const b of list) {
    pool.add(b);
    b.onConnected();
  }
  const replayed: Job[] = [];
  const verify = new Verifier({
    timeoutMs: 1000,
    report: () => {},
    replay: (job) => {
      replayed.push(job);
      job.attempts++;
      return true;
    },
    sourceOf: (flow) => (flow as { source: string }).source,
  });
  const job = (backend: Backend, source = "x", idempotent = true) =>
    newJob({ flow: { source }, backend, attempts: 1, idempotent, sentAt: performance.now() });
  return { list, verify, replayed, job };
}

Deno.test("verify: a failure is replayed; contradicted, it and those held meanwhile count against the backend", () => {
  const { list: [a, b], verify, replayed, job } = setup();
  const first = job(a);
  assert.equal(verify.failed(first, a, "failed"), "replayed");
  // While it runs: the same source's failures are held, another source's count as before.
  for (let i = 0; i < 4; i++) assert.equal(verify.failed(job(a), a, "failed"), "excused");
  assert.equal(verify.failed(job(a, "y"), a, "failed"), "failed");
  assert.equal(a.failures, 0);
  verify.answered(replayed[0], b, true);
  // 1 replayed + 4 held: 5 in a row, but the others fail nothing: out.
  assert.equal(a.failures, 5);
  assert.equal(a.state, "down");
  assert.match(a.reason, /5 requests in a row answered INTERNAL/);
});

Deno.test("verify: a failure the replay shares blames nobody, and the verdict stands for the source's next failures", () => {
  const { list: [a, b], verify, replayed, job } = setup();
  const first = job(a);
  assert.equal(verify.failed(first, a, "client"), "replayed");
  assert.equal(verify.failed(job(a), a, "client"), "excused");
  // The replay failed too: the request's fault (it counts against b neither).
  assert.equal(verify.failed(replayed[0], b, "client"), "answered");
  assert.equal(a.failures + b.failures, 0);
  // Within a second of the verdict: no replay, nobody's fault.
  assert.equal(verify.failed(job(a), a, "client"), "answered");
  assert.equal(verify.failed(job(a), a, "failed"), "excused");
  assert.equal(replayed.length, 1);
});

Deno.test("verify: BAD_REQUEST contradicted counts as a failure; not replayed, it counts for nothing", () => {
  const { list: [a, b], verify, replayed, job } = setup();
  assert.equal(verify.failed(job(a, "x", false), a, "client"), "answered");
  assert.equal(verify.failed(job(a, "x", false), a, "failed"), "failed");
  assert.equal(replayed.length, 0, "a non-idempotent request is never replayed");
  assert.equal(verify.failed(job(a), a, "client"), "replayed");
  verify.answered(replayed[0], b, true);
  assert.equal(a.failures, 1);
  assert.equal(verify.failed(job(a), a, "client"), "contradicted");
});

Deno.test("verify: a timeout is contradicted only by an answer within half of --timeout; without a verdict it counts", () => {
  const { list: [a, b, c], verify, replayed, job } = setup();
  assert.equal(verify.failed(job(a), a, "timeout"), "replayed");
  replayed[0].sentAt = performance.now() - 600;
  verify.answered(replayed[0], b, true);
  assert.equal(a.failures, 0, "a slow answer says nothing against it");
  assert.equal(verify.failed(job(c), c, "timeout"), "replayed");
  verify.ended(replayed[1]);
  assert.equal(c.failures, 1, "no verdict: counted as before");
});
