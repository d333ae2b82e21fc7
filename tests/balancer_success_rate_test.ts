/**
 * A backend's failures judged against the others' (roles/balancer/success_rate.ts;
 * hostile35 H3 and H10): out only when it fails well above them, never
 * when a request or a cause elsewhere fails every backend alike.
 */
import assert from "node:assert/strict";
import { Backend, Pool } from "../roles/balancer/backends.ts";
import { createPolicy } from "../roles/balancer/policies.ts";
import { MIN_OUTCOMES } from "../roles/balancer/success_rate.ts";
import { DistError, listen } from "../wire/mod.ts";
import {
  backendsOf,
  connectTo,
  eventually,
  roundRobinOver,
  startBalancer,
  startServers,
  stopAll,
} from "./helpers/balancer.ts";

const RULES = { rise: 2, fall: 3 };

function poolOf(n: number): Backend[] {
  const pool = new Pool();
  const list = Array.from(
    { length: n },
    (_, i) => new Backend("server", `s${i}`, { capacity: 64, rules: RULES }),
  );
  for (const b of list) {
    pool.add(b);
    b.onConnected();
  }
  return list;
}

Deno.test("Backend: INTERNAL answers that every backend gives alike take none out (H10: a client's poison input)", () => {
  const list = poolOf(4);
  for (let round = 0; round < 10; round++) {
    for (const b of list) assert.equal(b.onAnswered(1, "failed"), undefined);
  }
  assert.ok(list.every((b) => b.state === "up"));
  // One failing alone, beside the same others: out.
  const lone = poolOf(4);
  for (let i = 0; i < 40; i++) for (const b of lone.slice(1)) b.onAnswered(1, "answered");
  let t;
  for (let i = 0; i < 5 && t === undefined; i++) t = lone[0].onAnswered(1, "failed");
  assert.match(t!.reason, /5 requests in a row answered INTERNAL/);
});

Deno.test("Backend: timeouts every backend has alike take none out; one timing out alone is out", () => {
  const list = poolOf(2);
  for (let i = 0; i < 6; i++) for (const b of list) assert.equal(b.onTimedOut(30_000), undefined);
  assert.ok(list.every((b) => b.state === "up"));
  const lone = poolOf(2);
  for (let i = 0; i < 20; i++) lone[1].onAnswered(1, "answered");
  let t;
  for (let i = 0; i < 3 && t === undefined; i++) t = lone[0].onTimedOut(30_000);
  assert.match(t!.reason, /3 requests in a row got no answer within 30000 ms/);
  // Three timing out together among many answers (a client's long sleeps), before the other's: it stays.
  const busy = poolOf(2);
  for (let i = 0; i < 100; i++) for (const b of busy) b.onAnswered(1, "answered");
  for (let i = 0; i < 3; i++) assert.equal(busy[0].onTimedOut(30_000), undefined);
  assert.equal(busy[0].state, "up");
});

Deno.test("Backend: UNAVAILABLE/OVERLOADED answers take one out only well above the others, with enough outcomes on three", () => {
  const list = poolOf(3);
  // All refuse alike (a shared dependency down): none out.
  for (let i = 0; i < 3 * MIN_OUTCOMES; i++) for (const b of list) b.onAnswered(1, "refused");
  assert.ok(list.every((b) => b.state === "up"));
  const lone = poolOf(3);
  for (let i = 0; i < MIN_OUTCOMES; i++) for (const b of lone.slice(1)) b.onAnswered(1, "answered");
  const seen: (string | undefined)[] = [];
  while (lone[0].state === "up" && seen.length < 100) {
    seen.push(lone[0].onAnswered(1, "refused")?.reason);
  }
  assert.equal(seen.length, MIN_OUTCOMES);
  assert.match(seen.at(-1)!, /20 of its last 20 requests failed; out for 10 s at least/);
  // Two backends only: nothing to compare with, it stays.
  const two = poolOf(2);
  for (let i = 0; i < 100; i++) two[1].onAnswered(1, "answered");
  for (let i = 0; i < 100; i++) two[0].onAnswered(1, "refused");
  assert.equal(two[0].state, "up");
});

Deno.test("Backend: at most a part of the pool is out for its answers at once", () => {
  const list = poolOf(4);
  for (let i = 0; i < 40; i++) for (const b of list.slice(2)) b.onAnswered(1, "answered");
  for (let i = 0; i < 5; i++) list[0].onAnswered(1, "failed");
  assert.equal(list[0].state, "down");
  for (let i = 0; i < 5; i++) list[1].onAnswered(1, "failed");
  assert.equal(list[1].state, "down", "half of 4 may be out");
  for (let i = 0; i < 5; i++) list[2].onAnswered(1, "failed");
  assert.equal(list[2].state, "up", "not a third");
});

Deno.test("least-loaded and p2c count recent failures as requests in flight", () => {
  const fast = { available: true, inflight: 0, penalty: 16 };
  const busy = { available: true, inflight: 3, penalty: 0 };
  const ll = createPolicy("least-loaded");
  for (let i = 0; i < 4; i++) assert.equal(ll.pick([fast, busy]), busy);
  const p2c = createPolicy("p2c", () => 0.3);
  assert.equal(p2c.pick([fast, busy]), busy);
});

/** Fake servers (listen) that answer `add`, and `fail(params)`'s error when it gives one. */
function fakeServers(n: number, fail: (p: Record<string, unknown>) => DistError | undefined) {
  return Array.from({ length: n }, (_, i) =>
    listen({
      port: 0,
      role: "server",
      name: `fake${i}`,
      onRequest: async (method, params) => {
        if (method === "sys.ping") return { pong: true };
        const p = params as Record<string, unknown>;
        const err = fail(p);
        if (err !== undefined) throw err;
        await new Promise((r) => setTimeout(r, Number(p.ms ?? 0)));
        return (p.a as number) + (p.b as number);
      },
    }));
}

Deno.test("a client whose input every backend fails with INTERNAL takes no backend out (hostile35 H10)", async () => {
  const fakes = fakeServers(4, (p) => p.crash ? new DistError("INTERNAL", "TypeError") : undefined);
  const { lb, client } = await roundRobinOver(fakes.map((f) => `127.0.0.1:${f.addr.port}`));
  try {
    for (let round = 0; round < 10; round++) {
      await Promise.all(
        Array.from(
          { length: 4 },
          () => client.call("add", { a: 1, b: 2, crash: true }).catch(() => {}),
        ),
      );
    }
    const view = await backendsOf(client);
    assert.deepEqual(
      view.map((b) => b.state),
      ["up", "up", "up", "up"],
      JSON.stringify(view.map((b) => b.reason)),
    );
    assert.equal(await client.call("add", { a: 1, b: 2 }), 3);
  } finally {
    client.close();
    await stopAll([lb]);
    await Promise.all(fakes.map((f) => f.close()));
  }
});

/** 2 real servers and one answering every task UNAVAILABLE at once; 8 closed-loop callers × 50 `sleep 5`. */
async function refusingBeside(policy: string) {
  const servers = await startServers(2);
  const [refusing] = fakeServers(1, () => new DistError("UNAVAILABLE", "dependency down"));
  const lb = await startBalancer([], [
    "--backends",
    `${servers.map((s) => s.address).join(",")},127.0.0.1:${refusing.addr.port}`,
    "--policy",
    policy,
  ]);
  const client = await connectTo(lb.address);
  try {
    await eventually(
      async () => (await backendsOf(client)).every((b) => b.state === "up"),
      3000,
      "all up",
    );
    const codes = new Map<string, number>();
    await Promise.all(Array.from({ length: 8 }, async () => {
      for (let i = 0; i < 50; i++) {
        const code = await client.call("sleep", { ms: 5 }).then(
          () => "ok",
          (e) => (e as DistError).code,
        );
        codes.set(code, (codes.get(code) ?? 0) + 1);
      }
    }));
    const view = (await backendsOf(client)).find((b) => b.name.endsWith(`:${refusing.addr.port}`))!;
    return { refused: codes.get("UNAVAILABLE") ?? 0, view, seen: JSON.stringify([...codes]) };
  } finally {
    client.close();
    await stopAll([lb, ...servers]);
    await refusing.close();
  }
}

Deno.test("a backend answering every task UNAVAILABLE at once draws few requests under least-loaded (hostile35 H3)", async () => {
  const { refused, seen } = await refusingBeside("least-loaded");
  // Before: it drew most requests, for good (304 of 400 here; 9,072 of 14,254 in hostile35's run).
  // Under load (CI at load 10+) the calls made before its verdict took 41 and 55 of 400.
  assert.ok(refused <= 80, seen);
});

Deno.test("a backend answering every task UNAVAILABLE at once is taken out under round-robin (hostile35 H3)", async () => {
  const { refused, view, seen } = await refusingBeside("round-robin");
  assert.equal(view.state, "down", seen);
  assert.match(view.reason, /of its last \d+ requests failed; out for 10 s at least/);
  assert.ok(refused <= 60, seen);
});
