/**
 * Waiting matches shared fairly (hostile review 31 W4): their turns rotate
 * over sources (a user, else an address), not connections, so one source
 * cannot keep another's match waiting by opening more connections; and a
 * subscription change leaves the cached matches of topics outside its
 * pattern's fixed prefix alone, so churn elsewhere does not make a costly
 * topic be matched again. Driven through the core with fake publishers.
 */
import assert from "node:assert/strict";
import { topicSegments } from "../clients/contracts/mod.ts";
import { BrokerCore } from "../roles/broker/mod.ts";
import type { Publisher } from "../roles/broker/fanout.ts";
import { clientSource } from "../auth/mod.ts";
import { SubscriptionTree } from "../roles/broker/subscriptions.ts";
import { FakeSink } from "./helpers/broker_sink.ts";

const MIB = 1024 * 1024;

/** Every mix of `x` and `+` over `depth` levels, then `/nomatch`: a topic /x^depth/… reaches 2^(depth+1) nodes. */
function mixes(depth: number): string[] {
  const out: string[] = [];
  for (let bits = 0; bits < 1 << depth; bits++) {
    const segs = Array.from({ length: depth }, (_, k) => (bits >> k) & 1 ? "+" : "x");
    out.push("/" + segs.join("/") + "/nomatch");
  }
  return out;
}

const xs = (depth: number) => "/" + Array(depth).fill("x").join("/");

class FakePublisher implements Publisher {
  waiting = 0;
  heldBack = false;
  readonly source: string | undefined;
  constructor(source?: string) {
    this.source = source;
  }
  holdBack(): void {}
  goOn(): void {}
}

function core(): BrokerCore {
  return new BrokerCore({ retainBytes: 64 * MIB, maxPending: 64 * MIB, maxTopics: 1e6 });
}

Deno.test("waiting matches rotate over sources: 64 connections of one source cannot keep another's match behind theirs", async () => {
  const c = core();
  const depth = 13; // 2^14 nodes a match: 16 slices
  for (const topic of mixes(depth)) c.subscribe(new FakeSink(), { topic }).sub.release();
  const legitSink = new FakeSink();
  c.subscribe(legitSink, { topic: xs(depth) + "/legit" }).sub.release();

  const attackers = Array.from({ length: 64 }, () => new FakePublisher("10.0.0.66"));
  let attackersDone = 0;
  const attacks = attackers.map((p, k) => {
    const r = c.publish(`${xs(depth)}/e${k}`, k, false, 2, p);
    assert.ok(r.later !== undefined, "a costly match waits");
    return r.later.then((n) => {
      attackersDone++;
      return n;
    });
  });
  const legit = new FakePublisher("10.0.0.7");
  const r = c.publish(xs(depth) + "/legit", "hi", false, 2, legit);
  assert.ok(r.later !== undefined);
  assert.equal(await r.later, 1);
  assert.equal(legitSink.written.length, 1);
  // Per connection, it waited behind all 64 (each got a slice per round: 64 were done first).
  assert.ok(attackersDone <= 2, `${attackersDone} attacker matches were done before it`);
  await Promise.all(attacks);
  assert.equal(c.matches.waiting, 0);
});

Deno.test("waiting matches: a source's publishers share its turns, each in its own order", async () => {
  const c = core();
  const depth = 13;
  for (const topic of mixes(depth)) c.subscribe(new FakeSink(), { topic }).sub.release();
  const sink = new FakeSink();
  c.subscribe(sink, { topic: xs(depth) }).sub.release();
  const a = new FakePublisher("10.0.0.1");
  const b = new FakePublisher("10.0.0.1");
  const later: Promise<number>[] = [];
  for (let i = 0; i < 3; i++) {
    for (const [p, name] of [[a, "a"], [b, "b"]] as const) {
      later.push(c.publish(`${xs(depth)}/${name}${i}`, `${name}${i}`, false, 2, p).later!);
    }
  }
  // Without a source (an in-process publish): its own rotation.
  later.push(c.publish(`${xs(depth)}/none`, "none", false, 2, new FakePublisher()).later!);
  assert.deepEqual(await Promise.all(later), Array(7).fill(1));
  const values = sink.values() as string[];
  assert.deepEqual(values.filter((v) => v.startsWith("a")), ["a0", "a1", "a2"]);
  assert.deepEqual(values.filter((v) => v.startsWith("b")), ["b0", "b1", "b2"]);
  assert.ok(values.includes("none"));
});

Deno.test("clientSource() is the user of its own, else the address (the shared token is no user)", () => {
  assert.equal(clientSource("alice", "10.0.0.1"), "user alice");
  assert.equal(clientSource(undefined, "10.0.0.1"), "10.0.0.1");
  assert.equal(clientSource("token", "10.0.0.1"), "10.0.0.1");
});

Deno.test("a subscription change elsewhere keeps a costly topic's cached match; one that may cover it drops it", async () => {
  const c = core();
  const depth = 13;
  for (const topic of mixes(depth)) c.subscribe(new FakeSink(), { topic }).sub.release();
  const sink = new FakeSink();
  c.subscribe(sink, { topic: xs(depth) + "/legit" }).sub.release();
  const p = new FakePublisher("10.0.0.7");
  const topic = xs(depth) + "/legit";
  assert.equal(await c.publish(topic, 0, false, 2, p).later, 1, "matched in later turns");
  assert.equal(c.publish(topic, 1, false, 2, p).deliveries, 1, "then cached: at once");
  // Churn under another prefix (hostile31 W4: each dropped every cached match).
  const churn = new FakeSink();
  for (let i = 0; i < 100; i++) {
    const s = c.subscribe(churn, { topic: `/churn/${i}` }).sub;
    s.release();
    c.unsubscribe(s);
    const r = c.publish(topic, 2 + i, false, 2, p);
    assert.equal(r.later, undefined, `after change ${i}: still cached`);
    assert.equal(r.deliveries, 1);
  }
  // A change that may cover it: under its fixed prefix, or with + first.
  for (const pattern of ["/x/x", "/+/nothing", "/"]) {
    const s = c.subscribe(churn, { topic: pattern }).sub;
    s.release();
    const r = c.publish(topic, pattern, false, 2, p);
    assert.ok(r.later !== undefined, `${pattern}: matched again`);
    const expected = pattern === "/+/nothing" ? 1 : 2;
    assert.equal(await r.later, expected, pattern);
    c.unsubscribe(s);
  }
  assert.equal(sink.written.length, 105);
  assert.equal(churn.written.filter((d) => !d.retained).length, 2, "/x/x and / got theirs");
});

Deno.test("SubscriptionTree.unchangedFor() checks the changes since against the topic, up to its memory", () => {
  const t = new SubscriptionTree<{ sid: number; segments: string[] }>();
  let sid = 1;
  const add = (pattern: string) => {
    const s = { sid: sid++, segments: topicSegments(pattern) };
    t.add(s);
    return s;
  };
  add("/a/b");
  const since = t.generation;
  assert.ok(t.unchangedFor("/a/b/c", since));
  add("/c/+/d");
  add("/a/bc");
  assert.ok(t.unchangedFor("/a/b/c", since), "/c and /a/bc do not cover it");
  assert.ok(!t.unchangedFor("/c/x/d", since));
  assert.ok(!t.unchangedFor("/a/bc", since));
  const sub = add("/a/b/c/d");
  assert.ok(t.unchangedFor("/a/b/c", since), "a deeper pattern: not its topic");
  t.remove(sub);
  const g = t.generation;
  add("/+/b");
  assert.ok(!t.unchangedFor("/z", g), "+ first: any topic");
  const h = t.generation;
  for (let i = 0; i < 300; i++) add(`/other/${i}`);
  assert.ok(!t.unchangedFor("/a/b/c", h), "more changes than remembered");
  assert.ok(!t.unchangedFor("/a/b/c", -1), "never cached");
});
