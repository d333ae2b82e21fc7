/**
 * Answers to requests never sent (hostile34 Z12): the call table tells its
 * owner of each (a late answer to a call that timed out is not one), and a
 * balancer takes a backend that sends them out and closes its connection.
 */
import assert from "node:assert/strict";
import { Backend } from "../roles/balancer/mod.ts";
import { STRAY_BYTES, STRAYS } from "../roles/balancer/outlier.ts";
import { CallTable } from "../wire/calls.ts";
import { BENCH_MS, FORGET_MS, StrayBench } from "../roles/balancer/stray_bench.ts";
import { helloFrom } from "./helpers/from.ts";
import { jsonFrame } from "./helpers/raw.ts";
import { dial, DistError, jsonCodec, listen, msgpackCodec, type Peer } from "../wire/mod.ts";
import {
  backendsOf,
  eventually,
  roundRobinOver,
  startBalancer,
  startServers,
  stopAll,
} from "./helpers/balancer.ts";

const RULES = { rise: 2, fall: 3 };
const ANSWER = { result: "x", error: undefined, by: undefined };

Deno.test("CallTable: an answer to no call is a stray, unless it is one late answer per call that timed out or was aborted", async () => {
  const table = new CallTable();
  const strays: number[] = [];
  table.onStray = (bytes) => strays.push(bytes);
  assert.equal(table.settle(1e9, ANSWER, 100), false, "an id never sent");
  assert.equal(table.settle(0, ANSWER, 7), false);
  assert.deepEqual(strays, [100, 7]);
  const id = table.nextId();
  await table.wait(id, "echo", false, 10, undefined).catch(() => {});
  const abort = new AbortController();
  const aborted = table.nextId();
  const gone = table.wait(aborted, "echo", false, 10_000, abort.signal).catch(() => {});
  abort.abort();
  await gone;
  assert.equal(table.settle(id, ANSWER, 5), false, "late, after its timeout");
  assert.equal(table.stray(aborted, 6), true, "late, after its abort (as the fast path asks)");
  assert.deepEqual(strays, [100, 7]);
  assert.equal(table.settle(id, ANSWER, 9), false, "answered twice");
  assert.deepEqual(strays, [100, 7, 9]);
  // A decoded call's answer is settle's to take: the fast path must decode it.
  const pending = table.nextId();
  const answer = table.wait(pending, "sys.ping", false, 10_000, undefined);
  assert.equal(table.stray(pending, 1), false);
  assert.equal(table.settle(pending, ANSWER), true);
  assert.equal(await answer, "x");
  assert.deepEqual(strays, [100, 7, 9]);
});

Deno.test("Backend: strays on one connection take it out, by count or by bytes; a new connection starts the count again", () => {
  const b = new Backend("worker", "w", { capacity: 8, rules: RULES });
  b.onConnected();
  for (let i = 1; i < STRAYS; i++) assert.equal(b.onStray(10), undefined);
  b.onLost("gone");
  b.onConnected();
  for (let i = 1; i < STRAYS; i++) assert.equal(b.onStray(10), undefined);
  const t = b.onStray(10)!;
  assert.equal(t.to, "down");
  assert.match(t.reason, /^3 answers to requests never sent \(30 bytes\); connection closed/);
  assert.equal(b.strays, 2 * STRAYS - 1);
  const big = new Backend("server", "s", { capacity: 8, rules: RULES });
  big.onConnected();
  assert.match(big.onStray(STRAY_BYTES)!.reason, /^an answer to requests never sent/);
  assert.equal(big.state, "down");
});

Deno.test("a backend writing answers to requests never sent is closed and taken out; clients are served by the other (hostile34 Z12)", async () => {
  const servers = await startServers(1);
  let tasks = 0;
  let closed = false;
  const strays = listen({
    port: 0,
    role: "server",
    name: "strays",
    onRequest: (method, params, peer: Peer) => {
      if (method === "sys.ping") return { pong: true };
      tasks++;
      // The answer, and an unsolicited one of 100 KB with it (hostile34 blasted 1 MB ones).
      peer.conn.send(peer.codec, { id: 1e9 + tasks, result: "x".repeat(100_000) });
      peer.closed.then(() => closed = true);
      const p = params as { a: number; b: number };
      return p.a + p.b;
    },
  });
  const { lb, client } = await roundRobinOver([
    servers[0].address,
    `127.0.0.1:${strays.addr.port}`,
  ]);
  try {
    let ok = 0;
    for (let i = 0; i < 100; i++) {
      const r = await client.call("add", { a: i, b: 1 }).catch((e) => (e as DistError).code);
      if (r === i + 1) ok++;
    }
    assert.equal(ok, 100);
    // Before: read and dropped for good, the backend kept in rotation (50 tasks here).
    assert.ok(tasks <= STRAYS, `${tasks} tasks reached it`);
    await eventually(() => Promise.resolve(closed), 3000, "its connection closed");
    const view = (await backendsOf(client)).find((b) => b.name.endsWith(`:${strays.addr.port}`))!;
    assert.equal(view.state, "down");
    assert.match(view.reason, /answers? to requests never sent \(\d+ bytes\); connection closed/);
    const lines = lb.stderr().split("\n").filter((l) => l.includes("to requests never sent"));
    assert.equal(lines.length, 1, lines.join("\n"));
  } finally {
    client.close();
    await stopAll([lb, ...servers]);
    await strays.close();
  }
});

Deno.test("a registered worker sending answers to requests never sent, before any task, is closed: JSON (scanned) and MessagePack (decoded)", async () => {
  const lb = await startBalancer([]);
  const [host, port] = lb.workerAddress.split(":");
  try {
    // Both register first: once one is closed for strays, its address waits before registering again.
    const workers = [];
    for (const codec of [jsonCodec, msgpackCodec]) {
      const name = `strays-${codec.name}`;
      const worker = await dial({ host, port: Number(port) }, {
        role: "worker",
        name,
        codec,
        onRequest: (method) => method === "sys.ping" ? { pong: true } : null,
      });
      await worker.call("worker.register", { name, capacity: 4 });
      workers.push(worker);
    }
    for (const worker of workers) {
      let closed = false;
      worker.closed.then(() => closed = true);
      for (let k = 0; k < STRAYS; k++) {
        worker.conn.send(worker.codec, { id: 1e9 + k, result: "x" });
      }
      await eventually(() => Promise.resolve(closed), 3000, `${worker.codec.name} worker closed`);
    }
    const lines = lb.stderr().split("\n").filter((l) => l.includes("to requests never sent"));
    assert.equal(lines.length, 2, lines.join("\n"));
  } finally {
    await stopAll([lb]);
  }
});

Deno.test("StrayBench: a source waits 10 s after its worker's first closure for strays, twice as long after each, from scratch 10 min later", () => {
  let now = 0;
  const bench = new StrayBench(() => now);
  assert.equal(bench.refusal("10.0.0.1"), undefined);
  assert.equal(bench.strayed("10.0.0.1", "w1"), BENCH_MS);
  const e = bench.refusal("10.0.0.1")!;
  assert.equal(e.code, "UNAVAILABLE");
  assert.equal(
    e.message,
    "Worker registrations from 10.0.0.1 are refused for 10 s more: its worker w1 was closed " +
      "for answers to requests never sent",
  );
  assert.equal(bench.refusal("10.0.0.2"), undefined, "another source");
  now += BENCH_MS;
  assert.equal(bench.refusal("10.0.0.1"), undefined, "its wait is over");
  assert.equal(bench.strayed("10.0.0.1", "w2"), 2 * BENCH_MS);
  now += BENCH_MS;
  assert.match(
    bench.refusal("10.0.0.1")!.message,
    /for 10 s more: its worker w2 .* \(2 times in a row\)$/,
  );
  for (let i = 0; i < 10; i++) bench.strayed("10.0.0.1", "w");
  now += 1;
  assert.match(bench.refusal("10.0.0.1")!.message, /for 300 s more/, "at most 5 min");
  now += FORGET_MS;
  assert.equal(bench.strayed("10.0.0.1", "w3"), BENCH_MS, "from scratch");
});

Deno.test("a worker closed for strays cannot register again at once under a new name from its address; another address can (Z12's residue)", async () => {
  const lb = await startBalancer([]);
  const [host, port] = lb.workerAddress.split(":");
  try {
    const worker = await dial({ host, port: Number(port) }, {
      role: "worker",
      name: "strays",
      onRequest: (method) => method === "sys.ping" ? { pong: true } : null,
    });
    await worker.call("worker.register", { name: "strays", capacity: 4 });
    for (let k = 0; k < STRAYS; k++) worker.conn.send(worker.codec, { id: 1e9 + k, result: "x" });
    await worker.closed;
    // Before: registered at once under a new name, a fresh backend to send more strays.
    const again = await dial({ host, port: Number(port) }, { role: "worker", name: "fresh" });
    const err = await again.call("worker.register", { name: "fresh", capacity: 4 }).then(
      () => undefined,
      (e) => e as DistError,
    );
    again.close();
    assert.equal(err?.code, "UNAVAILABLE");
    assert.match(
      err!.message,
      /^Worker registrations from 127\.0\.0\.1 are refused for 10 s more: its worker strays was closed for answers to requests never sent$/,
    );
    assert.match(lb.stderr(), /Worker fresh from 127\.0\.0\.1:\d+ refused: Worker registrations/);
    // Another address registers meanwhile.
    const other = helloFrom(Number(port), "127.0.0.2", { role: "worker", name: "other" });
    assert.equal((await other.first())?.op, "welcome");
    other.socket.write(jsonFrame({ id: 1, method: "worker.register", params: { name: "other" } }));
    await eventually(() => Promise.resolve(other.frames.length > 1), 3000, "its answer");
    assert.deepEqual((other.frames[1] as { result?: unknown }).result, {
      registered: "other",
      capacity: 1,
      balancer: lb.stderr().match(/\b(balancer-\d+)\b/)![1],
    });
    other.socket.destroy();
  } finally {
    await stopAll([lb]);
  }
});
