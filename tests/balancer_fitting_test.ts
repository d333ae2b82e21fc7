/**
 * hostile h47b N8 without sockets: a request only some backends take (a
 * MessagePack request whose params pass the frame as JSON: only a backend
 * that speaks MessagePack) goes only to one of them, waits while none has
 * room, and the requests of other connections do not wait behind it while
 * other backends have room (roles/balancer/fitting.ts, forward.ts).
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

const RULES = { rise: 2, fall: 3 };

Deno.test("Dispatcher: a job for MessagePack backends only goes to them, waits for their room, and holds up nobody else", () => {
  const pool = new Pool();
  const json = new Backend("server", "json", { capacity: 1, rules: RULES });
  const mp = new Backend("worker", "mp", { capacity: 1, rules: RULES });
  json.name = "json";
  mp.name = "mp";
  for (const b of [json, mp]) {
    b.onConnected();
    b.served = 1; // each has answered: no trials here
    pool.add(b);
  }
  const sent: string[] = [];
  const onBackend = new Map<Job, Backend>();
  const rejected: string[] = [];
  const dispatcher = new Dispatcher<Job & { id: string }>(pool, createPolicy("round-robin"), {
    send(job, backend) {
      sent.push(`${job.id}>${backend.name}`);
      onBackend.set(job, backend);
      return true;
    },
    reject(job, err) {
      rejected.push(`${job.id}: ${err.code}`);
    },
    sizeOf: () => 100,
  }, {
    queueLimit: 100,
    queueBytes: Infinity,
    queueTimeoutMs: 60_000,
    retries: 2,
    budget: new RetryBudget(),
    now: () => performance.now(),
  });
  const a = {}, b = {};
  const only = (x: Backend) => x === mp;
  // json busy with a request of b's connection.
  const first = newJob({ id: "first", flow: b });
  dispatcher.submit(first);
  const big = [1, 2, 3].map((i) => newJob({ id: `big${i}`, flow: a, only }));
  for (const j of big) dispatcher.submit(j);
  // The first on mp; the rest wait for it (json has room for none of them).
  assert.deepEqual(sent, ["first>json", "big1>mp"]);
  // b's next requests wait for json.
  const small = [1, 2].map((i) => newJob({ id: `small${i}`, flow: b }));
  for (const j of small) dispatcher.submit(j);
  assert.equal(dispatcher.queued, 4);
  // json answers: b's next goes there, not held up behind a's, which json may not take.
  dispatcher.finish(first, "answered");
  assert.deepEqual(sent.slice(2), ["small1>json"]);
  dispatcher.finish(small[0], "answered");
  assert.deepEqual(sent.slice(3), ["small2>json"]);
  // Each answer on mp lets the next big one go there, and only there.
  dispatcher.finish(big[0], "answered");
  dispatcher.finish(big[1], "answered");
  dispatcher.finish(big[2], "answered");
  assert.deepEqual(sent.filter((s) => s.startsWith("big")), ["big1>mp", "big2>mp", "big3>mp"]);
  assert.deepEqual(rejected, []);
  assert.equal(dispatcher.queued, 0);
  dispatcher.close(new DistError("UNAVAILABLE", "test over"));
});
