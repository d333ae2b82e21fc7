/**
 * Unit tests of the broker's core: topic names, the topic tree, the
 * subscription tree, the retained store, subscriber policies and the core
 * that ties them, driven directly with a fake transport (no sockets).
 */
import assert from "node:assert/strict";
import { DistError } from "../wire/mod.ts";
import { normalizeTopic, topicSegments } from "../clients/contracts/mod.ts";
import { BrokerCore, type Policy, Subscription } from "../roles/broker/mod.ts";
import { SUBSCRIBE_VISITS } from "../roles/broker/core.ts";
import { CHILDREN_BYTES, NODE_BYTES, TOPIC_BYTES, TopicTree } from "../roles/broker/topics.ts";
import { PATTERN_NODE_BYTES, SubscriptionTree } from "../roles/broker/subscriptions.ts";
import { ENTRY_OVERHEAD, type RetainedHolder, RetainedStore } from "../roles/broker/retained.ts";
import { FakeSink } from "./helpers/broker_sink.ts";

const MIB = 1024 * 1024;

function core(options: Partial<ConstructorParameters<typeof BrokerCore>[0]> = {}): BrokerCore {
  return new BrokerCore({ retainBytes: 64 * MIB, maxPending: 8 * MIB, maxTopics: 1e6, ...options });
}

/** Subscribes and releases at once, as the front end does after answering. */
function sub(c: BrokerCore, sink: FakeSink, topic: string, extra: Record<string, unknown> = {}) {
  const s = c.subscribe(sink, { topic, ...extra });
  s.sub.release();
  return s;
}

function badRequest(err: unknown): true {
  assert.ok(err instanceof DistError, String(err));
  assert.equal(err.code, "BAD_REQUEST");
  return true;
}

// ---- topic names ----

Deno.test("normalizeTopic() adds the leading slash and drops a trailing one", () => {
  assert.equal(normalizeTopic("telephony/orange"), "/telephony/orange");
  assert.equal(normalizeTopic("/telephony/"), "/telephony");
  assert.equal(normalizeTopic("/"), "/");
  assert.equal(normalizeTopic("currency"), "/currency");
  assert.equal(normalizeTopic("/+/orange", { pattern: true }), "/+/orange");
});

Deno.test("normalizeTopic() refuses empty segments, spaces, misplaced + and non-strings", () => {
  for (const bad of ["", "/a//b", "//", "a b", "/a\tb", "/a\u0000", 42, null, "x".repeat(2000)]) {
    assert.throws(() => normalizeTopic(bad), badRequest, JSON.stringify(bad));
  }
  assert.throws(() => normalizeTopic("/+/a"), /only for subscriptions/);
  assert.throws(() => normalizeTopic("/a+/b", { pattern: true }), /whole segment/);
  assert.throws(() => normalizeTopic("/a" + "/b".repeat(64)), /too deep/);
});

Deno.test("topicSegments() splits a normalised topic; / has none", () => {
  assert.deepEqual(topicSegments("/"), []);
  assert.deepEqual(topicSegments("/a/+/c"), ["a", "+", "c"]);
});

// ---- topic tree ----

function tree(...topics: string[]): TopicTree {
  const t = new TopicTree();
  for (const topic of topics) t.create(topic, 0);
  return t;
}

function walked(t: TopicTree, pattern: string): string[] {
  const out: string[] = [];
  t.walk(topicSegments(pattern), (topic) => void out.push(topic.name));
  return out;
}

Deno.test("TopicTree.walk() visits the topic, its subtree, and + branches only", () => {
  const t = tree("/telephony", "/telephony/orange", "/telephony/unite", "/msg", "/a/orange/x");
  assert.deepEqual(walked(t, "/telephony"), [
    "/telephony",
    "/telephony/orange",
    "/telephony/unite",
  ]);
  assert.deepEqual(walked(t, "/+/orange"), ["/telephony/orange", "/a/orange/x"]);
  assert.deepEqual(walked(t, "/").length, 5);
  assert.deepEqual(walked(t, "/nothing"), []);
  // Branches are not topics: /a exists only on the way to /a/orange/x.
  assert.deepEqual(walked(t, "/a"), ["/a/orange/x"]);
  assert.equal(t.size, 5);
});

Deno.test("TopicTree.forget() prunes branches that lead nowhere and keeps the order", () => {
  const t = tree("/a/b/c", "/a/d");
  const bytes = t.bytes;
  assert.equal(t.oldest?.name, "/a/b/c");
  const a = t.root.children?.get("a");
  assert.equal(a?.path, "/a", "/a is a branch to two places");
  assert.equal(a?.children?.get("b")?.path, "/a/b/c", "/a/b/c is one node (a radix tree)");
  t.forget(t.get("/a/b/c")!);
  const d = t.root.children?.get("a");
  assert.equal(d?.path, "/a/d", "the branch /a, left with one child, is merged into it");
  assert.equal(d?.children, undefined);
  assert.equal(t.size, 1);
  assert.equal(d?.topics, 1, "a node counts the topics below it");
  assert.equal(t.oldest?.name, "/a/d");
  t.touch(t.get("/a/d")!, 5);
  assert.equal(t.newest?.name, "/a/d");
  assert.equal(
    bytes - t.bytes,
    TOPIC_BYTES + 6 + 2 * (NODE_BYTES + 1) + CHILDREN_BYTES,
    "its name, 2 nodes (its own, the branch /a) and the children map of /a",
  );
  t.forget(t.get("/a/d")!);
  assert.equal(t.bytes, 0);
  assert.equal(t.root.children, undefined);
});

// ---- subscription tree ----

interface TestSub {
  sid: number;
  name: string;
  segments: string[];
  group?: string;
}

let lastSid = 0;
function s(name: string, pattern: string, group?: string): TestSub {
  return { sid: ++lastSid, name, segments: topicSegments(pattern), group };
}

function matched(t: SubscriptionTree<TestSub>, topic: string): string[] {
  const { plain, groups } = t.match(topicSegments(topic));
  return [...plain.map((x) => x.name), ...groups.map((g) => `group:${g.name}`)].sort();
}

Deno.test("SubscriptionTree.match() finds subtree, exact-parent, + and root subscriptions", () => {
  const t = new SubscriptionTree<TestSub>();
  const subs = [
    s("root", "/"),
    s("tel", "/telephony"),
    s("orange", "/telephony/orange"),
    s("any-orange", "/+/orange"),
    s("plus", "/+"),
    s("msg", "/msg"),
  ];
  subs.forEach((x) => t.add(x));
  assert.deepEqual(matched(t, "/telephony/orange"), [
    "any-orange",
    "orange",
    "plus",
    "root",
    "tel",
  ]);
  assert.deepEqual(matched(t, "/telephony"), ["plus", "root", "tel"]);
  assert.deepEqual(matched(t, "/msg"), ["msg", "plus", "root"]);
  assert.deepEqual(matched(t, "/other/deep/topic"), ["plus", "root"]);
  assert.equal(t.size, 6);
});

Deno.test("SubscriptionTree.remove() leaves nothing behind and changes the generation", () => {
  const t = new SubscriptionTree<TestSub>();
  const a = s("a", "/x/y/z");
  const g1 = s("g1", "/x", "workers");
  const g2 = s("g2", "/x", "workers");
  [a, g1, g2].forEach((x) => t.add(x));
  assert.deepEqual(matched(t, "/x/y/z"), ["a", "group:workers"]);
  const gen = t.generation;
  assert.ok(t.remove(a));
  assert.ok(t.generation !== gen);
  assert.ok(!t.remove(a), "a second remove finds nothing");
  assert.ok(t.remove(g1));
  assert.deepEqual(matched(t, "/x/y/z"), ["group:workers"]);
  assert.ok(t.remove(g2));
  assert.equal(t.size, 0);
  assert.deepEqual(matched(t, "/x/y/z"), []);
});

Deno.test("Group.pick() rotates over the members", () => {
  const t = new SubscriptionTree<TestSub>();
  ["m1", "m2", "m3"].forEach((n) => t.add(s(n, "/jobs", "g")));
  const group = t.match(["jobs"]).groups[0];
  const picks = Array.from({ length: 6 }, () => group.pick().name);
  assert.deepEqual(picks, ["m1", "m2", "m3", "m1", "m2", "m3"]);
});

// ---- retained store ----

interface Holder extends RetainedHolder<Holder> {
  name: string;
}

Deno.test("RetainedStore.set() evicts the least recently updated values past the budget", () => {
  const store = new RetainedStore<Holder>(3 * (100 + ENTRY_OVERHEAD));
  const h = (name: string): Holder => ({
    name,
    retained: undefined,
    retainedBytes: 0,
    retainedAt: 0,
    retainedOlder: undefined,
    retainedNewer: undefined,
  });
  const [a, b, c, d] = [h("a"), h("b"), h("c"), h("d")];
  store.set(a, "A", 100, 1);
  store.set(b, "B", 100, 2);
  store.set(c, "C", 100, 3);
  store.set(a, "A2", 100, 4); // a is now the most recently updated
  assert.equal(store.count, 3);
  store.set(d, "D", 100, 5);
  assert.equal(b.retained, undefined, "b, least recently updated, was evicted");
  assert.equal(a.retained, "A2");
  assert.equal(store.evicted, 1);
  assert.equal(store.count, 3);
  assert.equal(store.bytes, 3 * (100 + ENTRY_OVERHEAD));
  store.clear(a);
  assert.equal(store.count, 2);
  assert.equal(store.evicted, 1, "a clear is not an eviction");
  assert.equal(store.set(a, "huge", 10_000, 6), "too_large");
  assert.equal(a.retained, undefined);
});

// ---- core: routing ----

Deno.test("BrokerCore.publish() reaches subtree, exact-parent, + and root subscribers", () => {
  const c = core();
  const [root, tel, orange, plus, msg] = [0, 0, 0, 0, 0].map(() => new FakeSink());
  sub(c, root, "/");
  sub(c, tel, "/telephony");
  sub(c, orange, "/telephony/orange");
  sub(c, plus, "/+/orange");
  sub(c, msg, "msg");
  c.publish("/telephony/orange", 1);
  c.publish("telephony/unite/", 2);
  c.publish("/telephony", 3);
  c.publish("/msg", "hello");
  assert.deepEqual(root.values(), [1, 2, 3, "hello"]);
  assert.deepEqual(tel.values(), [1, 2, 3]);
  assert.deepEqual(orange.values(), [1]);
  assert.deepEqual(plus.values(), [1]);
  assert.deepEqual(msg.values(), ["hello"]);
  assert.deepEqual(tel.written[1], {
    sid: 2,
    topic: "/telephony/unite",
    value: 2,
    retained: false,
  });
  assert.equal(c.messagesIn, 4);
  assert.equal(c.messagesOut, 4 + 3 + 1 + 1 + 1);
});

Deno.test("BrokerCore.publish() refuses a bad topic and routes nothing", () => {
  const c = core();
  const sink = new FakeSink();
  sub(c, sink, "/");
  for (const bad of ["/a//b", "", "/+", 7]) assert.throws(() => c.publish(bad, 1), badRequest);
  assert.equal(sink.written.length, 0);
  assert.equal(c.topics.size, 0);
});

Deno.test("BrokerCore.subscribe() sends retained values first, flagged, then live ones", () => {
  const c = core();
  c.publish("/telephony/orange", 10);
  c.publish("/telephony/unite", 20);
  c.publish("/telephony/moldcell", 30);
  c.publish("/msg", "not covered");
  const sink = new FakeSink();
  const { sub: s, topics, topicCount } = c.subscribe(sink, { topic: "/telephony" });
  assert.deepEqual(topics, ["/telephony/orange", "/telephony/unite", "/telephony/moldcell"]);
  assert.equal(topicCount, 3);
  // Live, while the subscription is still held: a new retained value, and
  // a message that leaves the retained value alone.
  c.publish("/telephony/orange", 11);
  c.publish("/telephony/unite", 21, false);
  assert.equal(sink.written.length, 0, "nothing before release");
  s.release();
  assert.deepEqual(sink.written.map((d) => [d.topic, d.value, d.retained]), [
    // orange's retained 10 was replaced after the subscribe: 11 comes live
    // instead, so no older value ever follows a newer one.
    ["/telephony/unite", 20, true],
    ["/telephony/moldcell", 30, true],
    ["/telephony/orange", 11, false],
    ["/telephony/unite", 21, false],
  ]);
});

Deno.test("BrokerCore.publish() with retain false leaves the retained value; null clears it", () => {
  const c = core();
  c.publish("/t", "kept");
  c.publish("/t", "passing", false);
  const first = new FakeSink();
  sub(c, first, "/t");
  assert.deepEqual(first.written, [{ sid: 1, topic: "/t", value: "kept", retained: true }]);
  c.publish("/t", null);
  assert.deepEqual(first.written.at(-1), { sid: 1, topic: "/t", value: null, retained: false });
  const late = new FakeSink();
  sub(c, late, "/t");
  assert.equal(late.written.length, 0, "a cleared topic has no retained value");
  assert.equal(c.retained.count, 0);
});

Deno.test("BrokerCore retained budget forgets the least recently updated values, counted", () => {
  const value = "x".repeat(128);
  const per = "/t/000".length + 130 + ENTRY_OVERHEAD;
  const c = core({ retainBytes: 10 * per });
  for (let i = 0; i < 15; i++) c.publish(`/t/${String(i).padStart(3, "0")}`, value);
  assert.equal(c.retained.count, 10);
  assert.equal(c.retained.evicted, 5);
  assert.ok(c.retained.bytes <= 10 * per);
  const sink = new FakeSink();
  sub(c, sink, "/t");
  assert.deepEqual(
    sink.written.map((d) => d.topic),
    Array.from({ length: 10 }, (_, i) => `/t/${String(i + 5).padStart(3, "0")}`),
  );
  assert.equal(c.topics.size, 15, "the topics themselves remain");
});

Deno.test("BrokerCore forgets the least recently active topic past max-topics", () => {
  const c = core({ maxTopics: 3 });
  c.publish("/a", 1);
  c.publish("/b", 2);
  c.publish("/c", 3);
  c.publish("/a", 4); // /a is active again: /b is now the oldest
  c.publish("/d", 5);
  assert.equal(c.topics.size, 3);
  assert.equal(c.topicsEvicted, 1);
  assert.deepEqual(c.listTopics().topics.map((t) => t.topic).sort(), ["/a", "/c", "/d"]);
  assert.equal(c.retained.count, 3, "the forgotten topic's retained value went with it");
});

Deno.test("BrokerCore.unsubscribe() leaves zero subscriptions", () => {
  const c = core();
  const sink = new FakeSink();
  const subs = ["/", "/a", "/a/+", "/a", "/b"].map((t, i) =>
    sub(c, sink, t, i % 2 ? { group: "g" } : {}).sub
  );
  assert.equal(c.subscriptions.size, 5);
  for (const x of subs) assert.ok(c.unsubscribe(x));
  assert.ok(!c.unsubscribe(subs[0]));
  assert.equal(c.subscriptions.size, 0);
  c.publish("/a/b", 1);
  assert.equal(sink.written.length, 0);
});

Deno.test("BrokerCore.listTopics() tells retained, activity, subscribers and counts", () => {
  let now = Date.UTC(2026, 0, 1);
  const c = core({ now: () => now });
  const sink = new FakeSink();
  sub(c, sink, "/telephony");
  sub(c, sink, "/+/orange");
  c.publish("/telephony/orange", 1);
  now += 1000;
  c.publish("/telephony/orange", 2, false);
  c.publish("/msg", "m", false);
  const { topics, truncated } = c.listTopics("/");
  assert.equal(truncated, false);
  assert.deepEqual(topics, [
    {
      topic: "/telephony/orange",
      retained: true,
      last_active: "2026-01-01T00:00:01.000Z",
      subscribers: 2,
      messages: 2,
      delivered: 4,
    },
    {
      topic: "/msg",
      retained: false,
      last_active: "2026-01-01T00:00:01.000Z",
      subscribers: 0,
      messages: 1,
      delivered: 0,
    },
  ]);
  assert.deepEqual(c.listTopics("/telephony").topics.map((t) => t.topic), ["/telephony/orange"]);
  assert.deepEqual(c.listTopics("/", 1), {
    topics: [topics[0]],
    truncated: true,
    next: "/telephony/orange",
  });
});

Deno.test("BrokerCore.publish() announces a new topic to the subscribers that cover it", () => {
  const c = core();
  const all = new FakeSink();
  const other = new FakeSink();
  sub(c, all, "/");
  sub(c, other, "/other");
  c.publish("/news/today", 1);
  c.publish("/news/today", 2);
  assert.deepEqual(all.created, [{ sid: 1, topic: "/news/today" }], "once, on creation");
  assert.deepEqual(other.created, []);
});

// ---- core: queue groups ----

Deno.test("BrokerCore queue group: each message to exactly one member, in rotation", () => {
  const c = core();
  const members = [new FakeSink(), new FakeSink(), new FakeSink()];
  members.forEach((m) => sub(c, m, "/jobs", { group: "workers" }));
  const plain = new FakeSink();
  sub(c, plain, "/jobs");
  for (let i = 0; i < 30; i++) c.publish("/jobs/x", i);
  assert.deepEqual(members.map((m) => m.written.length), [10, 10, 10]);
  const all = members.flatMap((m) => m.values()).sort((a, b) => (a as number) - (b as number));
  assert.deepEqual(all, Array.from({ length: 30 }, (_, i) => i), "none lost, none twice");
  assert.equal(plain.written.length, 30, "a plain subscriber still gets every message");
});

Deno.test("BrokerCore queue group members get no retained values", () => {
  const c = core();
  c.publish("/jobs/a", 1);
  const member = new FakeSink();
  sub(c, member, "/jobs", { group: "g" });
  assert.equal(member.written.length, 0);
});

Deno.test("BrokerCore.subscribe() refuses bad patterns, groups and policies", () => {
  const c = core();
  const sink = new FakeSink();
  for (
    const bad of [
      { topic: "/a//b" },
      { topic: 5 },
      { topic: "/a", group: "" },
      { topic: "/a", group: 3 },
      { topic: "/a", policy: "sometimes" },
    ]
  ) {
    assert.throws(() => c.subscribe(sink, bad), badRequest, JSON.stringify(bad));
  }
  assert.equal(c.subscriptions.size, 0);
});

// ---- subscriber policies ----

function slowSetup(policy: Policy, maxPending = 1000) {
  const c = core({ maxPending });
  const slow = new FakeSink();
  const fast = new FakeSink();
  const s = sub(c, slow, "/t", { policy }).sub;
  sub(c, fast, "/t");
  slow.stalled = true;
  return { c, slow, fast, s };
}

Deno.test("Subscription policy disconnect: cut off with SLOW_CONSUMER past max-pending", () => {
  const { c, slow, fast } = slowSetup("disconnect");
  for (let i = 0; i < 50; i++) c.publish("/t", i);
  assert.ok(slow.slowError instanceof DistError);
  assert.equal(slow.slowError.code, "SLOW_CONSUMER");
  assert.match(slow.slowError.message, /more than max-pending 1000/);
  assert.ok(slow.written.length <= 10, "no more than max-pending went to the transport");
  assert.equal(fast.written.length, 50, "the fast subscriber got every message");
});

Deno.test("Subscription policy drop-oldest: keeps the newest within max-pending, counts drops", () => {
  const { c, slow, fast, s } = slowSetup("drop-oldest");
  for (let i = 0; i < 50; i++) c.publish("/t", i);
  assert.equal(slow.slowError, undefined);
  assert.equal(fast.written.length, 50);
  assert.ok(s.queuedBytes + slow.pendingBytes <= 1000, "pending stays within max-pending");
  const before = slow.written.length;
  slow.drain();
  const after = slow.values().slice(before);
  assert.equal(after.at(-1), 49, "the newest survived");
  assert.equal(before + after.length + s.dropped, 50, "each message delivered or counted dropped");
  const got = slow.values() as number[];
  assert.deepEqual(got, [...got].sort((a, b) => a - b), "in publish order");
});

Deno.test("Subscription policy latest: one pending value per topic, the newest", () => {
  const { c, slow, s } = slowSetup("latest", 100_000);
  slow.pendingBytes = 50_000; // the transport is full, though within max-pending: all queues
  for (let i = 0; i < 20; i++) {
    c.publish("/t/a", `a${i}`);
    c.publish("/t/b", `b${i}`);
  }
  assert.equal(s.queued, 2);
  assert.equal(s.dropped, 38);
  const before = slow.written.length;
  slow.drain();
  assert.deepEqual(slow.values().slice(before), ["a19", "b19"]);
});

Deno.test("Subscription streams a large retained snapshot as the transport drains", () => {
  const c = core({ maxPending: 2000 });
  for (let i = 0; i < 100; i++) c.publish(`/r/${i}`, i);
  const sink = new FakeSink();
  sink.stalled = true;
  const { sub: s } = c.subscribe(sink, { topic: "/r" });
  s.release();
  assert.equal(sink.slowError, undefined, "a snapshot larger than max-pending is no fault");
  assert.ok(sink.written.length < 100);
  c.publish("/r/0", "live");
  for (let i = 0; i < 100 && s.queued > 0; i++) {
    sink.drain();
    sink.stalled = true;
  }
  const values = sink.values();
  assert.equal(values.length, 101);
  assert.equal(values.at(-1), "live", "live after every retained value");
  assert.ok(sink.written.slice(0, 100).every((d) => d.retained));
});

Deno.test("Subscription.cancel() drops what is pending and stops delivery", () => {
  const { c, slow, s } = slowSetup("drop-oldest", 100_000);
  slow.pendingBytes = 50_000;
  c.publish("/t", 1);
  assert.equal(s.queued, 1);
  c.unsubscribe(s);
  assert.equal(s.queued, 0);
  slow.drain();
  c.publish("/t", 2);
  assert.equal(slow.written.length, 0);
  assert.ok(s instanceof Subscription);
});

// ---- bounds a hostile peer could multiply ----

Deno.test("Subscription budget: many drop-oldest subscriptions on one connection share max-pending", () => {
  const c = core({ maxPending: 10_000 });
  const sink = new FakeSink();
  const subs = Array.from({ length: 50 }, () => sub(c, sink, "/", { policy: "drop-oldest" }).sub);
  sink.stalled = true;
  sink.pendingBytes = 2_000; // the socket holds some, and drains no more
  for (let i = 0; i < 200; i++) c.publish("/x", i);
  const queued = subs.reduce((n, s) => n + s.queuedBytes, 0);
  assert.equal(sink.queued.bytes, queued, "the connection's budget is the sum of its queues");
  assert.ok(queued + sink.pendingBytes <= 10_000, `connection pending ${queued} + 2000`);
  assert.ok(c.dropped > 0);
  assert.equal(sink.slowError, undefined);
});

Deno.test("Subscription budget: a busy subscription cannot starve a quiet one on its connection", () => {
  const c = core({ maxPending: 10_000 });
  const sink = new FakeSink();
  const busy = sub(c, sink, "/busy", { policy: "drop-oldest" }).sub;
  const quiet = sub(c, sink, "/quiet", { policy: "latest" }).sub;
  sink.stalled = true;
  sink.pendingBytes = 5_000;
  for (let i = 0; i < 500; i++) c.publish("/busy", i);
  c.publish("/quiet", "news");
  assert.equal(quiet.queued, 1, "the quiet subscription's message waits, not dropped");
  assert.ok(busy.dropped > 0);
  assert.ok(sink.queued.bytes + sink.pendingBytes <= 10_000);
  sink.drain();
  assert.ok(sink.values().includes("news"));
});

Deno.test("BrokerCore.subscribe() keeps no copy of the retained snapshot per subscription", async () => {
  const c = core();
  for (let i = 0; i < 20_000; i++) c.publish(`/r/${i}`, i);
  const sinks = Array.from({ length: 400 }, () => {
    const sink = new FakeSink();
    sink.stalled = true;
    sink.pendingBytes = 1 * MIB; // full: nothing more goes to it for now
    return sink;
  });
  const before = Deno.memoryUsage().heapUsed;
  const subs = sinks.map((sink) => sub(c, sink, "/").sub);
  const grown = Deno.memoryUsage().heapUsed - before;
  // 400 snapshots of 20,000 values were 8 million messages (hundreds of MB).
  assert.ok(grown < 40 * MIB, `heap grew ${(grown / MIB).toFixed(1)} MiB`);
  assert.ok(subs.every((s) => s.snapshotting && s.queuedBytes === 0));
  // The values are read as the transport drains, a bounded part per turn.
  const sink = sinks[0];
  sink.drain();
  for (let i = 0; i < 1000 && subs[0].snapshotting; i++) {
    await new Promise((r) => setTimeout(r, 0));
  }
  assert.equal(sink.written.length, 20_000);
  assert.ok(sink.written.every((d) => d.retained));
});

Deno.test("BrokerCore.subscribe() bounds its work: a + over a wide level, counted and walked in parts", async () => {
  const c = core();
  const n = 3 * SUBSCRIBE_VISITS;
  for (let i = 0; i < n; i++) c.publish(`/${i}/y`, i);
  const sink = new FakeSink();
  const { sub: s, topicCount, complete, topics } = c.subscribe(sink, { topic: "/+/y" });
  assert.equal(complete, false, "counting stopped at its bound");
  assert.ok(topicCount > 0 && topicCount < n);
  assert.equal(topics.length, 1000);
  const listed = c.listTopics("/+/z");
  assert.deepEqual(listed, { topics: [], truncated: false }, "within the list bound");
  // The snapshot walks a pattern that matches nothing retained in parts.
  const empty = c.subscribe(sink, { topic: "/+/z" }).sub;
  empty.release();
  assert.ok(empty.snapshotting, "the walk goes on in a later turn");
  for (let i = 0; i < 100 && empty.snapshotting; i++) await new Promise((r) => setTimeout(r, 0));
  assert.equal(empty.snapshotting, false);
  s.release();
  for (let i = 0; i < 100 && s.snapshotting; i++) await new Promise((r) => setTimeout(r, 0));
  assert.equal(sink.written.length, n, "every retained value, over several turns");
});

Deno.test("BrokerCore topic byte budget: deep names cannot take more than --max-topic-bytes", () => {
  const c = core({ maxTopicBytes: 1 * MIB });
  const deep = (n: number) =>
    "/" + [`t${n}`.padEnd(15, "a"), ...Array.from({ length: 63 }, (_, k) => `s${k}`)].join("/");
  // About 600 bytes each (a topic of 64 new segments is one node): 1 MiB keeps about 1,800.
  for (let i = 0; i < 4000; i++) c.publish(deep(i), 1, false);
  assert.ok(c.topics.bytes <= 1 * MIB, `${c.topics.bytes} bytes`);
  assert.ok(c.topicsEvicted > 1000, `${c.topicsEvicted} evicted`);
  assert.ok(c.topics.get(deep(3999)) !== undefined, "the newest stays");
  assert.equal(c.topics.get(deep(0)), undefined, "the least recently active went first");
  for (let i = 0; i < 50; i++) c.publish(`/short/${i}`, i, false);
  assert.equal(c.topics.get("/short/0")?.name, "/short/0");
});

Deno.test("deep subscription patterns count their tree nodes in max-memory, and give them back", () => {
  // A pattern of 64 new segments makes 64 nodes of the subscription tree
  // (about 330 bytes each); counted at a flat 2.5 KB a subscription, 20,000
  // of them took a broker to 9× its --max-memory.
  // The queues' slabs are counted process-wide: 4 MiB on top of them.
  const c = core({ maxMemory: core().memoryBytes + 4 * MIB });
  const sink = new FakeSink();
  const subs: Subscription[] = [];
  const deep = (i: number) => "/" + Array.from({ length: 64 }, (_, j) => `s${i}x${j}`).join("/");
  const empty = c.memoryBytes;
  subs.push(sub(c, sink, deep(0)).sub);
  const one = c.memoryBytes - empty;
  assert.ok(one >= 64 * (PATTERN_NODE_BYTES + CHILDREN_BYTES), `one deep pattern counted ${one}`);
  // A pattern sharing all but its last segment with another adds one node.
  const before = c.memoryBytes;
  subs.push(sub(c, new FakeSink(), deep(0).replace(/[^/]+$/, "other")).sub);
  assert.ok(c.memoryBytes - before < 3 * 1024, `a shared prefix counted ${c.memoryBytes - before}`);
  let taken = 1;
  for (; taken < 1000; taken++) {
    try {
      subs.push(sub(c, sink, deep(taken)).sub);
    } catch (err) {
      assert.ok(err instanceof DistError && err.code === "OVERLOADED", String(err));
      break;
    }
  }
  // 4 MiB / 2.5 KB would have let in 1,638; each is counted at about 24 KB now.
  assert.ok(taken > 100 && taken < 250, `${taken} deep patterns taken within 4 MiB`);
  // Unsubscribing everything gives the tree's bytes back.
  for (const s of subs) assert.ok(c.unsubscribe(s));
  assert.equal(c.subscriptions.size, 0);
  assert.equal(c.subscriptions.bytes, 0);
});
