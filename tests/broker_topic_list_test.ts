/**
 * `broker.topics` a page at a time (hostile review 31, W5): a topic whose
 * subscribers cost more to count than the listing's bound is listed with a
 * floor and the walk goes on; `next`/`after` page through every topic,
 * whatever stopped an answer (its limit, its walk bound), in the order of
 * one whole listing.
 */
import assert from "node:assert/strict";
import { BrokerCore } from "../roles/broker/mod.ts";
import { COUNT_VISITS_PER_TOPIC, LIST_VISITS } from "../roles/broker/topic_list.ts";
import type { TopicInfo } from "../clients/contracts/mod.ts";
import { FakeSink } from "./helpers/broker_sink.ts";
import { startBroker } from "./helpers/broker.ts";
import { connect } from "../clients/mod.ts";

const MIB = 1024 * 1024;

function core(): BrokerCore {
  return new BrokerCore({ retainBytes: 64 * MIB, maxPending: 8 * MIB, maxTopics: 1e6 });
}

/**
 * Every page of a listing, following `next`, by one connection (`owner`);
 * with `seek`, each page by a new one (so it seeks its place from the name
 * alone); with `others`, other connections list between its pages.
 */
function pages(
  c: BrokerCore,
  prefix: string,
  limit: number,
  options: { seek?: boolean; others?: boolean; between?: () => void } = {},
): TopicInfo[][] {
  const out: TopicInfo[][] = [];
  let after: string | undefined;
  let owner = {};
  for (let i = 0; i < 10_000; i++) {
    const page = c.listTopics(prefix, limit, after, owner);
    out.push(page.topics);
    assert.equal(page.truncated, page.next !== undefined);
    if (page.next === undefined) return out;
    after = page.next;
    options.between?.();
    if (options.seek) owner = {};
    if (options.others) {
      for (let k = 0; k < 20; k++) c.listTopics(prefix, 1, page.next, {});
    }
  }
  throw new Error("no end of pages");
}

const names = (topics: TopicInfo[]) => topics.map((t) => t.topic);

Deno.test("listTopics() lists a topic too costly to count with a floor, and the rest after it", () => {
  const c = core();
  const sink = new FakeSink();
  // 2^16 patterns /+/{x,+}^16/nomatch: the topic /a/x^16 reaches 2^17 pattern nodes, more
  // than a whole listing's bound (it made the listing of / empty: hostile31 W5).
  const depth = 16;
  for (let bits = 0; bits < 1 << depth; bits++) {
    const mix = Array.from({ length: depth }, (_, k) => (bits >> k) & 1 ? "+" : "x");
    c.subscribe(sink, { topic: `/+/${mix.join("/")}/nomatch` }).sub.release();
  }
  const costly = "/a" + "/x".repeat(depth);
  c.publish(costly, 1, true, 0);
  for (let i = 0; i < 100; i++) c.publish(`/b/legit${i}`, i);
  c.subscribe(sink, { topic: "/c" }).sub.release(); // any change drops the cached counts
  assert.ok(2 ** (depth + 1) > LIST_VISITS && LIST_VISITS > COUNT_VISITS_PER_TOPIC);
  const { topics, truncated } = c.listTopics("/", 1000);
  assert.equal(truncated, false);
  assert.equal(topics.length, 101, "every topic listed (none before the fix)");
  assert.equal(topics[0].topic, costly);
  assert.equal(topics[0].subscribers_floor, true);
  assert.equal(topics[0].subscribers, 0, "none of the patterns covers it: what was found");
  for (const t of topics.slice(1)) {
    assert.match(t.topic, /^\/b\/legit\d+$/);
    assert.equal(t.subscribers, 0);
    assert.equal(t.subscribers_floor, undefined, "counted");
  }
});

Deno.test("listTopics() counts exactly when the count fits, cached or not", () => {
  const c = core();
  const sink = new FakeSink();
  for (const p of ["/", "/a", "/+/b", "/a/+", "/a/b/c"]) {
    c.subscribe(sink, { topic: p }).sub.release();
  }
  c.subscribe(sink, { topic: "/a", group: "g" }).sub.release();
  c.subscribe(sink, { topic: "/a", group: "g" }).sub.release();
  c.publish("/a/b", 1);
  c.publish("/z", 1);
  const listed = c.listTopics("/");
  assert.deepEqual(listed.topics.map((t) => [t.topic, t.subscribers, t.subscribers_floor]), [
    ["/a/b", 6, undefined],
    ["/z", 1, undefined],
  ]);
});

Deno.test("listTopics() pages with next/after through every topic, in one listing's order", () => {
  const c = core();
  // Branches, chains that are one radix node, topics on inner nodes, a wide level.
  const made: string[] = [];
  const rand = seeded(7);
  for (let i = 0; i < 3000; i++) {
    const depth = 1 + Math.floor(rand() * 5);
    const segs = Array.from({ length: depth }, () => "abcdefgh"[Math.floor(rand() * 8)]);
    if (rand() < 0.2) segs.push(`w${i}`);
    made.push("/" + segs.join("/"));
    c.publish(made[made.length - 1], i, rand() < 0.5);
  }
  for (const prefix of ["/", "/a", "/+/b", "/+/+/c", "/a/+", "/h/h/h/h", "/nothing"]) {
    const whole = c.listTopics(prefix, Infinity);
    assert.equal(whole.truncated, false);
    for (const limit of [1, 7, 100, 10_000]) {
      for (const seek of [false, true]) {
        const paged = pages(c, prefix, limit, { seek });
        const what = `${prefix} by ${limit}${seek ? ", seeking" : ""}`;
        assert.deepEqual(names(paged.flat()), names(whole.topics), what);
        for (const page of paged.slice(0, -1)) assert.equal(page.length, limit);
      }
    }
  }
});

Deno.test("listTopics() pages past its walk bound, where an answer may list nothing", () => {
  const c = core();
  // /+/z walks every /i and its child y, finding nothing, before the /z topics.
  const n = LIST_VISITS;
  for (let i = 0; i < n; i++) c.publish(`/${i}/y`, i, false);
  for (let i = 0; i < 5; i++) c.publish(`/z${i}/z`, i, false);
  const first = c.listTopics("/+/z", 1000);
  assert.deepEqual(first.topics, []);
  assert.equal(first.truncated, true);
  assert.ok(first.next !== undefined);
  for (const others of [false, true]) {
    const paged = pages(c, "/+/z", 1000, { others });
    assert.ok(paged.length >= 2);
    assert.deepEqual(names(paged.flat()), [0, 1, 2, 3, 4].map((i) => `/z${i}/z`));
  }
});

Deno.test("listTopics() seeks past any number of siblings within its bound, and goes on next page (hostile32 X4)", () => {
  const c = core();
  const n = 3 * LIST_VISITS;
  for (let i = 0; i < n; i++) c.publish(`/t/${i}`, i, false);
  // A new connection names a place past 3 bounds' worth of siblings: each answer steps over
  // at most one bound of them (the seek cost O(siblings) in one answer before), lists nothing
  // and names the same place; its next pages go on stepping, other clients' listings between.
  const owner = {};
  const after = `/t/${n - 3}`;
  let calls = 0;
  let page = c.listTopics("/", 10, after, owner);
  while (page.topics.length === 0) {
    assert.equal(page.next, after);
    assert.ok(++calls <= 4, "goes on");
    for (let k = 0; k < 20; k++) c.listTopics("/", 1, `/t/${k}`, {});
    page = c.listTopics("/", 10, page.next, owner);
  }
  assert.ok(calls >= 2, `stopped within its bound (${calls} empty answers)`);
  const listed = names(page.topics);
  for (let k = 0; page.next !== undefined && k < 4; k++) {
    page = c.listTopics("/", 10, page.next, owner);
    listed.push(...names(page.topics));
  }
  assert.equal(page.truncated, false);
  assert.deepEqual(listed, [`/t/${n - 2}`, `/t/${n - 1}`]);
});

Deno.test("listTopics() pages of a changing tree miss no topic that stayed", () => {
  for (const seed of [1, 2, 3, 4]) {
    const c = core();
    const rand = seeded(seed);
    const topic = () =>
      "/" + Array.from({ length: 1 + Math.floor(rand() * 4) }, () => "abcd"[Math.floor(rand() * 4)])
        .join("/");
    for (let i = 0; i < 500; i++) c.publish(topic(), i, false);
    const before = new Set(names(c.listTopics("/", Infinity).topics));
    const gone = new Set<string>();
    const listed = pages(c, "/", 13, {
      seek: seed > 2,
      between: () => {
        // Between pages: new topics, and some forgotten (as eviction does).
        for (let i = 0; i < 3; i++) c.publish(topic() + "/n", i, false);
        const victim = [...before][Math.floor(rand() * before.size)];
        const t = c.topics.get(victim);
        if (t !== undefined && !gone.has(victim)) {
          gone.add(victim);
          c.retained.clear(t);
          c.topics.forget(t);
        }
      },
    }).flat();
    const seen = new Set(names(listed));
    for (const name of before) {
      if (!gone.has(name)) assert.ok(seen.has(name), `seed ${seed}: ${name} missed`);
    }
  }
});

Deno.test("listTopics() takes any topic as after, under the prefix or not", () => {
  const c = core();
  for (const t of ["/a", "/a/b", "/a/b/c", "/a/d", "/e"]) c.publish(t, 1);
  assert.deepEqual(names(c.listTopics("/", 10, "/a/b").topics), ["/a/b/c", "/a/d", "/e"]);
  assert.deepEqual(names(c.listTopics("/", 10, "/a/b/c").topics), ["/a/d", "/e"]);
  assert.deepEqual(names(c.listTopics("/", 10, "/a/x").topics), ["/a/b", "/a/b/c", "/a/d", "/e"]);
  assert.deepEqual(names(c.listTopics("/", 10, "/a/b/c/d/e").topics), ["/a/d", "/e"]);
  assert.deepEqual(names(c.listTopics("/", 10, "/").topics), [
    "/a",
    "/a/b",
    "/a/b/c",
    "/a/d",
    "/e",
  ]);
  assert.deepEqual(names(c.listTopics("/", 10, "/e").topics), []);
  assert.deepEqual(
    names(c.listTopics("/a/d", 10, "/e").topics),
    ["/a/d"],
    "outside: from the start",
  );
  assert.throws(() => c.listTopics("/", 10, "/+"), /only for subscriptions/);
});

Deno.test("broker.topics pages through the client library: next, then after", async () => {
  const b = await startBroker();
  const conn = await connect(b.address);
  try {
    for (let i = 0; i < 25; i++) await conn.publish(`/p/${i}`, i, { confirm: true });
    const seen: string[] = [];
    let page = await conn.topics({ prefix: "/p", limit: 10 });
    for (let n = 0; n < 10 && page.next !== undefined; n++) {
      assert.equal(page.truncated, true);
      assert.equal(page.topics.length, 10);
      seen.push(...names(page.topics));
      page = await conn.topics({ prefix: "/p", limit: 10, after: page.next });
    }
    seen.push(...names(page.topics));
    assert.equal(page.truncated, false);
    assert.deepEqual(seen, Array.from({ length: 25 }, (_, i) => `/p/${i}`));
    await assert.rejects(conn.topics({ after: "/+" }), /only for subscriptions/);
  } finally {
    await conn.close();
    await b.stop();
  }
});

function seeded(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 2 ** 32;
  };
}
