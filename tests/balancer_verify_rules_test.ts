/**
 * The rules of verification by replay (roles/balancer/verify.ts) as plain
 * data: which failures are replayed, which are held, and what a verdict
 * counts.
 */
import assert from "node:assert/strict";
import { Backend, Pool } from "../roles/balancer/backends.ts";
import type { Job } from "../roles/balancer/dispatch_types.ts";
import { UNREPLAYED_MS, Verifier } from "../roles/balancer/verify.ts";
import { dial, listen } from "../wire/mod.ts";
import { newJob } from "./helpers/balancer.ts";

const RULES = { rise: 2, fall: 3 };

function setup(now?: () => number) {
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
    now,
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
  // From one source, with no verdict on a: excused (hostile38 L5).
  assert.equal(verify.failed(job(a, "x", false), a, "failed"), "excused");
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

Deno.test("verify: a non-idempotent failure counts when another source failed there, or by the last verdict (hostile38 L5)", () => {
  const { list: [a, b, c], verify, replayed, job } = setup();
  // One source alone: its timeouts and INTERNALs on a are excused, however many.
  for (let i = 0; i < 5; i++) {
    assert.equal(verify.failed(job(a, "x", false), a, "timeout"), "excused");
    assert.equal(verify.failed(job(a, "x", false), a, "failed"), "excused");
  }
  // Another source fails there too: a backend failing everyone's counts.
  assert.equal(verify.failed(job(a, "y", false), a, "timeout"), "timeout");
  assert.equal(verify.failed(job(a, "x", false), a, "timeout"), "timeout");
  assert.equal(verify.failed(job(a, "y", false), a, "failed"), "failed");
  // UNAVAILABLE/OVERLOADED count as before (hostile35 H3), BAD_REQUEST not at all.
  assert.equal(verify.failed(job(b, "x", false), b, "refused"), "refused");
  assert.equal(verify.failed(job(b, "x", false), b, "client"), "answered");
  // A replay found b guilty of an INTERNAL: the source's non-idempotent ones count meanwhile.
  assert.equal(verify.failed(job(b), b, "failed"), "replayed");
  verify.answered(replayed[0], c, true);
  assert.equal(verify.failed(job(b, "x", false), b, "failed"), "failed");
  // A replay found c's INTERNAL the request's fault: the non-idempotent ones are excused.
  assert.equal(verify.failed(job(c, "z"), c, "failed"), "replayed");
  verify.failed(replayed[1], a, "failed");
  assert.equal(verify.failed(job(c, "y", false), c, "failed"), "excused");
});

Deno.test("verify: one source's non-idempotent timeouts count once the backend answered nothing for UNREPLAYED_MS", () => {
  let now = 0;
  const { list: [a], verify, job } = setup(() => now);
  a.served = 1; // it answered before: not a newcomer
  for (; now < UNREPLAYED_MS; now += 1000) {
    assert.equal(verify.failed(job(a, "x", false), a, "timeout"), "excused", `at ${now} ms`);
  }
  // Answering pings but no request for 10 s: a broken backend, out as before.
  assert.equal(verify.failed(job(a, "x", false), a, "timeout"), "timeout");
  // A late answer (it ran the slow request): alive, the next ones are excused again.
  a.lateAnswers++;
  now += 1000;
  assert.equal(verify.failed(job(a, "x", false), a, "timeout"), "excused");
});

Deno.test("late answers reach a balancer's backend as lateAnswers (Peer.onLateAnswer)", async () => {
  const server = listen({
    port: 0,
    role: "server",
    name: "slow",
    onRequest: async () => {
      await new Promise((r) => setTimeout(r, 200));
      return 1;
    },
  });
  const peer = await dial({ host: "127.0.0.1", port: server.addr.port }, {
    role: "balancer",
    name: "t",
  });
  try {
    let late = 0;
    peer.onLateAnswer = () => late++;
    await assert.rejects(peer.call("sleep", {}, { timeout: 50 }), /timed out/);
    await new Promise((r) => setTimeout(r, 400));
    assert.equal(late, 1);
  } finally {
    peer.close();
    await server.close(0);
  }
});
