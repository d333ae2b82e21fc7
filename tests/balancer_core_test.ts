/**
 * Unit tests of the balancer's core, without sockets: the waiting queue,
 * the health rules, the retry budget and the dispatcher (queueing,
 * failover, the idempotency guard).
 */
import assert from "node:assert/strict";
import {
  Backend,
  createPolicy,
  Dispatcher,
  FairQueue,
  type Job,
  LatencyWindow,
  Pool,
  RetryBudget,
  WaitQueue,
} from "../roles/balancer/mod.ts";
import { DistError } from "../wire/mod.ts";
import { sizeOfValue } from "../roles/balancer/relay.ts";
import { sleep, waitFor } from "./helpers/raw.ts";
import { newJob } from "./helpers/balancer.ts";

const RULES = { rise: 2, fall: 3 };

Deno.test("WaitQueue keeps FIFO order, refuses beyond its limit and grows its ring", () => {
  const q = new WaitQueue<number>(3000);
  for (let i = 0; i < 3000; i++) assert.ok(q.push(i));
  assert.equal(q.push(3000), false);
  assert.equal(q.length, 3000);
  for (let i = 0; i < 1500; i++) assert.equal(q.shift(), i);
  for (let i = 0; i < 1500; i++) assert.ok(q.push(3000 + i));
  assert.equal(q.peek(), 1500);
  assert.deepEqual(q.drain(), Array.from({ length: 3000 }, (_, i) => 1500 + i));
  assert.equal(q.shift(), undefined);
});

Deno.test("WaitQueue with limit 0 refuses everything", () => {
  const q = new WaitQueue<number>(0);
  assert.equal(q.push(1), false);
  assert.equal(q.length, 0);
});

Deno.test("Backend is up on its first connect and out at once when the connection is lost", () => {
  const b = new Backend("server", "127.0.0.1:1", { capacity: 2, rules: RULES });
  assert.equal(b.state, "down");
  assert.equal(b.onConnected()?.to, "up");
  assert.ok(b.available);
  assert.equal(b.onLost("reset")?.to, "down");
  assert.equal(b.onLost("refused"), undefined, "no second transition");
  assert.equal(b.available, false);
});

Deno.test("Backend comes back after `rise` successes, the reconnect counting as one", () => {
  const b = new Backend("server", "127.0.0.1:1", { capacity: 2, rules: RULES });
  b.onConnected();
  b.onLost("reset");
  assert.equal(b.onConnected(), undefined, "one success of two");
  assert.equal(b.state, "down");
  assert.equal(b.onCheckPassed()?.to, "up");
});

Deno.test("Backend goes out after `fall` missed checks in a row, not fewer", () => {
  const b = new Backend("server", "127.0.0.1:1", { capacity: 2, rules: RULES });
  b.onConnected();
  b.onCheckFailed("timeout");
  b.onCheckFailed("timeout");
  b.onCheckPassed();
  b.onCheckFailed("timeout");
  assert.equal(b.onCheckFailed("timeout"), undefined);
  assert.equal(b.state, "up");
  assert.equal(b.onCheckFailed("timeout")?.to, "down");
  assert.equal(b.checksFailed, 5);
  assert.equal(b.onCheckPassed(), undefined);
  assert.equal(b.onCheckPassed()?.to, "up", "still connected: two passes bring it back");
});

Deno.test("Pool counts missed checks of every backend there has been, removed ones too", () => {
  const pool = new Pool();
  const a = new Backend("server", "127.0.0.1:1", { capacity: 2, rules: RULES });
  const w = new Backend("worker", "127.0.0.1:2", { capacity: 2, rules: RULES });
  pool.add(a);
  pool.add(w);
  a.onCheckFailed("timeout");
  w.onCheckFailed("timeout");
  w.onCheckFailed("timeout");
  assert.equal(pool.checksFailed, 3);
  pool.remove(w); // a worker that left: its misses stay counted
  pool.remove(w); // removed twice, counted once
  assert.equal(pool.checksFailed, 3);
  a.onCheckFailed("timeout");
  assert.equal(pool.checksFailed, 4);
});

Deno.test("LatencyWindow's percentiles are of the last `size` answers, before and after it grows", () => {
  const w = new LatencyWindow(100);
  assert.deepEqual(w.percentiles(), { p50: 0, p90: 0, p99: 0, max: 0 });
  for (let ms = 1; ms <= 10; ms++) w.add(ms);
  assert.deepEqual(w.percentiles(), { p50: 5, p90: 9, p99: 10, max: 10 });
  // 1..250: the window holds 151..250.
  for (let ms = 11; ms <= 250; ms++) w.add(ms);
  assert.deepEqual(w.percentiles(), { p50: 200, p90: 240, p99: 249, max: 250 });
});

Deno.test("Backend is not available when full", () => {
  const b = new Backend("server", "127.0.0.1:1", { capacity: 2, rules: RULES });
  b.onConnected();
  b.inflight = 2;
  assert.equal(b.available, false);
});

Deno.test("RetryBudget allows a share of requests plus a floor per second, up to its max", () => {
  let now = 0;
  const budget = new RetryBudget({ ratio: 0.5, minPerSecond: 2, max: 4, now: () => now });
  assert.ok(budget.withdraw());
  assert.ok(budget.withdraw());
  assert.equal(budget.withdraw(), false, "the floor is spent");
  budget.deposit();
  budget.deposit();
  assert.ok(budget.withdraw(), "two requests pay for one retry");
  assert.equal(budget.withdraw(), false);
  now += 500;
  assert.ok(budget.withdraw(), "half a second refills one");
  for (let i = 0; i < 100; i++) budget.deposit();
  assert.equal(budget.balance, 4, "capped");
});

interface TestJob extends Job {
  id: number;
  error?: DistError;
  /** What sizeOf says. */
  bytes: number;
}

/** A dispatcher over `n` fake backends whose sends are recorded. */
function setup(
  n: number,
  options: {
    capacity?: number;
    queue?: number;
    queueBytes?: number;
    queueMs?: number;
    share?: number;
    now?: () => number;
    sourceOf?: (flow: object) => string | undefined;
  } = {},
) {
  const pool = new Pool();
  const backends = Array.from({ length: n }, (_, i) => {
    const b = new Backend("server", `b${i + 1}`, {
      capacity: options.capacity ?? 10,
      rules: RULES,
    });
    b.onConnected();
    pool.add(b);
    return b;
  });
  const sent: [number, string][] = [];
  const failed: TestJob[] = [];
  const dispatcher: Dispatcher<TestJob> = new Dispatcher(pool, createPolicy("round-robin"), {
    send(job, backend) {
      if (backend.state !== "up") return false;
      sent.push([job.id, backend.name]);
      return true;
    },
    reject(job, err) {
      job.error = err;
      failed.push(job);
    },
    sizeOf: (job) => job.bytes,
  }, {
    queueLimit: options.queue ?? 100,
    queueBytes: options.queueBytes ?? Infinity,
    queueTimeoutMs: options.queueMs ?? 1000,
    retries: 2,
    budget: new RetryBudget({ minPerSecond: 100 }),
    contendedShare: options.share,
    now: options.now,
    sourceOf: options.sourceOf,
  });
  let next = 1;
  const job = (idempotent = true, bytes = 100, flow?: object): TestJob =>
    newJob({ id: next++, flow, idempotent, bytes });
  return { pool, backends, sent, failed, dispatcher, job };
}

Deno.test("Dispatcher.submit() sends in rotation and counts in flight", () => {
  const { dispatcher, sent, backends, job } = setup(3);
  for (let i = 0; i < 6; i++) dispatcher.submit(job());
  assert.deepEqual(sent.map(([, b]) => b), ["b1", "b2", "b3", "b1", "b2", "b3"]);
  assert.deepEqual(backends.map((b) => b.inflight), [2, 2, 2]);
});

Deno.test("Dispatcher queues when every backend is full and sends in order as slots free", () => {
  const { dispatcher, sent, job } = setup(1, { capacity: 1 });
  const jobs = [job(), job(), job()];
  for (const j of jobs) dispatcher.submit(j);
  assert.deepEqual(sent, [[1, "b1"]]);
  assert.equal(dispatcher.queued, 2);
  dispatcher.finish(jobs[0], "answered");
  assert.deepEqual(sent.map(([id]) => id), [1, 2]);
  dispatcher.finish(jobs[1], "answered");
  assert.deepEqual(sent.map(([id]) => id), [1, 2, 3]);
  assert.equal(dispatcher.queued, 0);
  dispatcher.close(new DistError("UNAVAILABLE", "test over"));
});

Deno.test("Dispatcher: while another client is active, a client has four shares on the backends while none waits, one while its requests wait", () => {
  const { dispatcher, sent, job } = setup(2, { capacity: 100, share: 4 });
  const [a, b] = [{}, {}];
  const first = Array.from({ length: 20 }, () => job(true, 100, a));
  for (const j of first) dispatcher.submit(j);
  assert.equal(sent.length, 20, "alone, a client may use every slot");
  const other = job(true, 100, b);
  dispatcher.submit(other);
  assert.equal(sent.at(-1)?.[0], other.id, "another client's request goes at once");
  for (let i = 0; i < 10; i++) dispatcher.submit(job(true, 100, a));
  assert.equal(sent.length, 21, "past four shares, the pipelining client's requests wait");
  assert.equal(dispatcher.queued, 10);
  dispatcher.submit(job(true, 100, b));
  assert.equal(sent.length, 22, "the other client's requests do not wait behind them");
  for (const j of first.slice(0, 17)) dispatcher.finish(j, "answered");
  assert.equal(
    sent.length,
    23,
    "with its requests waiting, back under one share (3 out), one more goes",
  );
  assert.equal(dispatcher.queued, 9);
  dispatcher.close(new DistError("UNAVAILABLE", "test over"));
});

Deno.test("Dispatcher: while none waits, a connection's read of up to four shares goes on whole", () => {
  const { dispatcher, sent, job } = setup(2, { capacity: 100, share: 4 });
  const [a, b] = [{}, {}];
  dispatcher.submit(job(true, 100, b));
  // One read of sixteen requests beside another active connection: before,
  // four went and twelve waited, then went in fours as answers came (a
  // write to the backend, and back, for every four).
  const read = Array.from({ length: 16 }, () => job(true, 100, a));
  for (const j of read) dispatcher.submit(j);
  assert.equal(sent.length, 17, "all sixteen go at once");
  assert.equal(new Set(sent.slice(1).map(([, backend]) => backend)).size, 1, "to one backend");
  dispatcher.submit(job(true, 100, a));
  assert.equal(dispatcher.queued, 1, "past four shares, it waits");
  const light = job(true, 100, b);
  dispatcher.submit(light);
  assert.equal(sent.at(-1)?.[0], light.id, "the other's request does not wait behind it");
  dispatcher.close(new DistError("UNAVAILABLE", "test over"));
});

Deno.test("Dispatcher: a connection holding more than four shares yields to one within its share", () => {
  let now = 0;
  const { dispatcher, sent, job } = setup(2, { capacity: 100, share: 4, now: () => now });
  const [bulk, light] = [{}, {}];
  const ids = new Set<number>();
  const bulkSent = () => sent.filter(([id]) => ids.has(id)).length;
  const first = job(true, 100, light);
  dispatcher.submit(first);
  const jobs = Array.from({ length: 40 }, () => job(true, 100, bulk));
  for (const j of jobs) {
    ids.add(j.id);
    dispatcher.submit(j);
  }
  assert.equal(bulkSent(), 16, "four shares go at once while none waits");
  for (const j of jobs.slice(0, 16)) dispatcher.finish(j, "answered");
  assert.equal(
    bulkSent(),
    17,
    "24 waiting: a bulk flow, one at a time while the other has a request out",
  );
  const more = [job(true, 100, light), job(true, 100, light), job(true, 100, light)];
  for (const j of more) dispatcher.submit(j);
  assert.equal(sent.filter(([id]) => !ids.has(id)).length, 4, "the other's requests go at once");
  assert.equal(bulkSent(), 17, "the bulk flow's next waits while one of its own is out");
  for (const j of [first, ...more]) dispatcher.finish(j, "answered");
  assert.equal(bulkSent(), 17, "the other answered a moment ago: it may send again");
  now += 60;
  dispatcher.pump();
  assert.equal(bulkSent(), 20, "once the other is idle, the bulk flow has its share again");
  dispatcher.close(new DistError("UNAVAILABLE", "test over"));
});

Deno.test("Dispatcher: connections of one source share its shares while another source is busy", () => {
  let now = 0;
  const sources = new Map<object, string>();
  const { dispatcher, sent, job } = setup(2, {
    capacity: 100,
    share: 4,
    now: () => now,
    sourceOf: (flow) => sources.get(flow),
  });
  // Eight connections from one address, and a client from another.
  const spread = Array.from({ length: 8 }, () => {
    const flow = {};
    sources.set(flow, "10.0.0.2");
    return flow;
  });
  const other = {};
  sources.set(other, "10.0.0.1");
  const ids = new Set<number>();
  const spreadSent = () => sent.filter(([id]) => ids.has(id)).length;
  const submitSpread = (each: number) =>
    spread.flatMap((flow) =>
      Array.from({ length: each }, () => {
        const j = job(true, 100, flow);
        ids.add(j.id);
        dispatcher.submit(j);
        return j;
      })
    );
  const first = submitSpread(2);
  assert.equal(spreadSent(), 16, "alone, a source's connections go within a share each");
  const mine = job(true, 100, other);
  dispatcher.submit(mine);
  assert.equal(sent.at(-1)?.[0], mine.id, "another source's request goes at once");
  // Each connection within its share (2 out, 3 more), but the source is past two shares.
  const more = submitSpread(3);
  assert.equal(spreadSent(), 16, "beyond two shares on the backends, the source's requests wait");
  assert.equal(dispatcher.queued, 24);
  for (const j of first) dispatcher.finish(j, "answered");
  const held = spreadSent();
  assert.ok(
    held <= 18,
    `${held - 16} of 24 sent: more than five shares in all, a bulk flow beside the other's request`,
  );
  const light = Array.from({ length: 3 }, () => job(true, 100, other));
  for (const j of light) dispatcher.submit(j);
  assert.equal(
    sent.filter(([id]) => !ids.has(id)).length,
    4,
    "the other source's requests go at once",
  );
  assert.equal(spreadSent(), held, "while it has requests out, the bulk source's wait");
  for (const j of [mine, ...light]) dispatcher.finish(j, "answered");
  for (const j of more.filter((j) => j.backend !== undefined)) dispatcher.finish(j, "answered");
  now += 60;
  dispatcher.pump();
  assert.equal(
    spreadSent(),
    40,
    "once the other source is idle, each connection has its share again",
  );
  dispatcher.close(new DistError("UNAVAILABLE", "test over"));
});

Deno.test("Dispatcher: connections of one source alone are limited by connection only", () => {
  const { dispatcher, sent, job } = setup(2, {
    capacity: 100,
    share: 4,
    sourceOf: () => "127.0.0.1",
  });
  const flows = Array.from({ length: 6 }, () => ({}));
  for (const flow of flows) for (let i = 0; i < 20; i++) dispatcher.submit(job(true, 100, flow));
  // The first connection, alone at first, sent all twenty; the second four
  // shares (nothing waited yet); the others a share each, as if each were
  // alone (as a source beside another busy one, two shares in all).
  assert.equal(sent.length, 52, "a share on each of six connections, as if each were alone");
  assert.equal(dispatcher.queued, 68);
  dispatcher.close(new DistError("UNAVAILABLE", "test over"));
});

Deno.test("Dispatcher answers OVERLOADED at once when the queue is full", () => {
  const { dispatcher, failed, job } = setup(1, { capacity: 1, queue: 2 });
  for (let i = 0; i < 5; i++) dispatcher.submit(job());
  assert.equal(dispatcher.queued, 2);
  assert.deepEqual(failed.map((j) => [j.id, j.error?.code]), [[4, "OVERLOADED"], [
    5,
    "OVERLOADED",
  ]]);
  assert.equal(dispatcher.stats.overloaded, 2);
  dispatcher.close(new DistError("UNAVAILABLE", "test over"));
});

Deno.test("Dispatcher answers OVERLOADED at once beyond the queue's byte budget, and frees bytes as jobs leave", async () => {
  const { dispatcher, failed, backends, job } = setup(1, {
    capacity: 1,
    queueBytes: 1000,
    queueMs: 50,
  });
  const running = job(true, 5000);
  dispatcher.submit(running); // sent at once: no budget needed
  const waiting = [job(true, 400), job(true, 400)];
  for (const j of waiting) dispatcher.submit(j);
  assert.equal(dispatcher.queuedBytes, 800);
  dispatcher.submit(job(true, 300));
  assert.deepEqual(failed.map((j) => j.error?.code), ["OVERLOADED"]);
  assert.match(failed[0].error!.message, /800 bytes of requests waiting, at most 1000/);
  dispatcher.submit(job(true, 200));
  assert.equal(dispatcher.queuedBytes, 1000, "a job that fits exactly is taken");
  // One leaves for the backend: its bytes are free again.
  dispatcher.finish(running, "answered");
  assert.equal(dispatcher.queuedBytes, 600);
  // The rest expire: nothing is left counted.
  await waitFor(() => failed.length === 3, 2000, "the expiries");
  assert.equal(dispatcher.queuedBytes, 0);
  assert.equal(dispatcher.stats.overloaded, 1);
  // A retry goes back to the head whatever the budget, and counts.
  backends[0].onLost("reset");
  dispatcher.finish(waiting[0], "lost");
  assert.equal(dispatcher.queuedBytes, 400);
  dispatcher.close(new DistError("UNAVAILABLE", "test over"));
  assert.equal(dispatcher.queuedBytes, 0);
});

Deno.test("Dispatcher fails a request with UNAVAILABLE after the queue timeout when no backend is up", async () => {
  const { dispatcher, failed, backends, job } = setup(2, { queueMs: 50 });
  for (const b of backends) b.onLost("gone");
  const t0 = performance.now();
  dispatcher.submit(job());
  await waitFor(() => failed.length === 1, 2000, "the expiry");
  assert.ok(performance.now() - t0 >= 45);
  assert.equal(failed[0].error?.code, "UNAVAILABLE");
  assert.match(failed[0].error!.message, /No healthy backend within 50 ms/);
});

Deno.test("Dispatcher sends a queued request as soon as a backend comes up", async () => {
  const { dispatcher, sent, backends, job } = setup(1, { queueMs: 2000 });
  backends[0].onLost("gone");
  dispatcher.submit(job());
  await sleep(20);
  backends[0].onConnected();
  backends[0].onCheckPassed();
  dispatcher.pump();
  assert.deepEqual(sent, [[1, "b1"]]);
  dispatcher.close(new DistError("UNAVAILABLE", "test over"));
});

Deno.test("Dispatcher retries a request lost with its backend on another backend", () => {
  const { dispatcher, sent, backends, failed, job } = setup(3);
  const j = job();
  dispatcher.submit(j);
  backends[0].onLost("reset");
  dispatcher.finish(j, "lost");
  assert.deepEqual(sent, [[1, "b1"], [1, "b2"]]);
  assert.equal(failed.length, 0);
  assert.equal(dispatcher.stats.retries, 1);
  assert.equal(backends[0].failures, 1);
  assert.equal(backends[0].inflight, 0);
});

Deno.test("Dispatcher never sends a non-idempotent request twice", () => {
  const { dispatcher, sent, backends, failed, job } = setup(3);
  const j = job(false);
  dispatcher.submit(j);
  backends[0].onLost("reset");
  dispatcher.finish(j, "lost");
  assert.deepEqual(sent, [[1, "b1"]]);
  assert.equal(failed[0].error?.code, "UNAVAILABLE");
  assert.match(failed[0].error!.message, /may have run/);
});

Deno.test("Dispatcher stops after `retries` extra sends", () => {
  const { dispatcher, sent, backends, failed, job } = setup(4);
  const j = job();
  dispatcher.submit(j);
  for (let i = 0; i < 3; i++) {
    backends[i].onLost("reset");
    dispatcher.finish(j, "lost");
  }
  assert.equal(sent.length, 3, "one send and two retries");
  assert.equal(failed[0].error?.code, "UNAVAILABLE");
  assert.match(failed[0].error!.message, /tried 3 times/);
});

Deno.test("Dispatcher fails over no more than the retry budget allows", () => {
  const pool = new Pool();
  const a = new Backend("server", "a", { capacity: 100, rules: RULES });
  const b = new Backend("server", "b", { capacity: 100, rules: RULES });
  for (const x of [a, b]) {
    x.onConnected();
    pool.add(x);
  }
  const failed: DistError[] = [];
  const d = new Dispatcher<Job>(pool, createPolicy("round-robin"), {
    send: (_job, backend) => backend.state === "up",
    reject: (_job, err) => failed.push(err),
    sizeOf: () => 1,
  }, {
    queueLimit: 10,
    queueBytes: Infinity,
    queueTimeoutMs: 1000,
    retries: 2,
    budget: new RetryBudget({ ratio: 0, minPerSecond: 3, now: () => 0 }),
  });
  const jobs: Job[] = Array.from({ length: 6 }, () => newJob({}));
  for (const j of jobs) d.submit(j);
  const onA = jobs.filter((j) => j.backend === a);
  a.onLost("reset");
  for (const j of onA) d.finish(j, "lost");
  assert.equal(d.stats.retries, 3);
  assert.equal(failed.length, 0);
  for (const j of jobs.filter((j) => j.backend === b)) d.finish(j, "lost");
  assert.ok(failed.length > 0, "beyond the budget requests fail");
  assert.match(failed[0].message, /retry budget spent/);
  d.close(new DistError("UNAVAILABLE", "test over"));
});

Deno.test("Dispatcher.close() fails what waits and what comes later", () => {
  const { dispatcher, failed, job } = setup(1, { capacity: 1 });
  dispatcher.submit(job());
  dispatcher.submit(job());
  dispatcher.close(new DistError("UNAVAILABLE", "shutting down"));
  dispatcher.submit(job());
  assert.deepEqual(failed.map((j) => j.id), [2, 3]);
});

Deno.test("sizeOfValue() is about a value's JSON size and stops once past its limit", () => {
  const value = {
    text: "x".repeat(1000),
    list: [1, 2.5, true, null, "ab"],
    nested: { a: { b: "c" } },
  };
  const json = JSON.stringify(value).length;
  const size = sizeOfValue(value, Infinity);
  assert.ok(size >= json * 0.8 && size <= json * 1.5, `${size} for ${json} bytes of JSON`);
  assert.equal(sizeOfValue(new Uint8Array(5000), Infinity), 5000);
  // A million elements are not walked to refuse them against a 1,000-byte limit.
  const huge = Array.from({ length: 1_000_000 }, () => 1);
  const t0 = performance.now();
  assert.ok(sizeOfValue(huge, 1000) > 1000);
  assert.ok(performance.now() - t0 < 50, "stopped early");
});

Deno.test("sizeOfValue() counts strings as the JSON bytes they are sent as (hostile33 Y9)", () => {
  const utf8 = new TextEncoder();
  const jsonBytes = (v: unknown) => utf8.encode(JSON.stringify(v)).length;
  // 2 x 32,000 U+0001 is 384 KB on a backend's connection; it counted 64 KB.
  for (const ch of ["\u0001", "€", "B", '"', "😀"]) {
    const params = { text: ch.repeat(32_000) };
    const size = sizeOfValue(params, Infinity);
    const json = jsonBytes(params);
    assert.ok(
      size >= json && size <= json + 16,
      `${JSON.stringify(ch)}: ${size} for ${json} bytes`,
    );
  }
  // Random strings of every kind of character: strings exactly, with their quotes.
  const pool = [
    "a",
    "\u0000",
    "\n",
    "\t",
    "\u001f",
    '"',
    "\\",
    "é",
    "€",
    "\ud83d\ude00",
    "\ud800",
    "\udc00",
  ];
  let seed = 7;
  const next = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
  for (let k = 0; k < 2000; k++) {
    let text = "";
    for (let i = Math.floor(next() * 20); i > 0; i--) {
      text += pool[Math.floor(next() * pool.length)];
    }
    assert.equal(sizeOfValue(text, Infinity), jsonBytes(text), JSON.stringify(text));
  }
  // Bounded work: a 10 MB string is not scanned to refuse it against a 64 KiB limit.
  const long = "\u0001".repeat(10_000_000);
  long.charCodeAt(0); // flattened now, as a decoded string is (repeat makes a rope)
  const t0 = performance.now();
  assert.ok(sizeOfValue(long, 65_536) > 65_536);
  assert.ok(performance.now() - t0 < 100, "stopped early");
});

interface Item {
  id: string;
  flow?: object;
  deadline: number;
  queuedBytes: number;
}

Deno.test("FairQueue serves clients in turn, one request each, FIFO within a client", () => {
  const q = new FairQueue<Item>(100, Infinity);
  const [a, b] = [{}, {}];
  const item = (id: string, flow: object, deadline = 0): Item => ({
    id,
    flow,
    deadline,
    queuedBytes: 1,
  });
  // A floods first; B's one request waits behind one of A's, not all of them.
  for (let i = 1; i <= 5; i++) assert.equal(q.push(item(`a${i}`, a), []), undefined);
  q.push(item("b1", b), []);
  assert.equal(q.flows, 2);
  const order: string[] = [];
  for (let it = q.shift(); it !== undefined; it = q.shift()) order.push(it.id);
  assert.deepEqual(order, ["a1", "b1", "a2", "a3", "a4", "a5"]);
  assert.equal(q.length, 0);
  assert.equal(q.bytes, 0);
  assert.equal(q.flows, 0);
});

Deno.test("FairQueue when full sheds the last requests of the client holding the most", () => {
  const q = new FairQueue<Item>(4, 1000);
  const [a, b] = [{}, {}];
  const item = (id: string, flow: object, bytes = 1): Item => ({
    id,
    flow,
    deadline: 0,
    queuedBytes: bytes,
  });
  for (let i = 1; i <= 4; i++) q.push(item(`a${i}`, a), []);
  // A itself gets no more room...
  assert.equal(q.push(item("a5", a), []), "count");
  // ...while B gets A's last place.
  const shed: Item[] = [];
  assert.equal(q.push(item("b1", b), shed), undefined);
  assert.deepEqual(shed.map((i) => i.id), ["a4"]);
  // Bytes likewise: B's 900 bytes push out A's requests, last first, until they fit.
  const q2 = new FairQueue<Item>(100, 1000);
  for (let i = 1; i <= 4; i++) q2.push(item(`a${i}`, a, 200), []);
  const shed2: Item[] = [];
  assert.equal(q2.push(item("b1", b, 500), shed2), undefined);
  assert.deepEqual(shed2.map((i) => i.id), ["a4", "a3"]);
  assert.equal(q2.bytes, 900);
  assert.equal(q2.push(item("big", b, 2000), []), "bytes");
});

Deno.test("FairQueue expires the oldest requests of every client, in arrival order", () => {
  const q = new FairQueue<Item>(100, Infinity);
  const [a, b] = [{}, {}];
  const item = (id: string, flow: object, deadline: number): Item => ({
    id,
    flow,
    deadline,
    queuedBytes: 1,
  });
  q.push(item("a1", a, 10), []);
  q.push(item("b1", b, 20), []);
  q.push(item("a2", a, 30), []);
  q.push(item("b2", b, 40), []);
  assert.equal(q.shift()!.id, "a1"); // served: never expires
  assert.equal(q.nextDeadline, 20);
  const expired: Item[] = [];
  q.expire(30, expired);
  assert.deepEqual(expired.map((i) => i.id), ["b1", "a2"]);
  assert.equal(q.length, 1);
  assert.equal(q.nextDeadline, 40);
  assert.equal(q.shift()!.id, "b2");
  assert.equal(q.nextDeadline, Infinity);
});
