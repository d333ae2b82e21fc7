/**
 * A broker restarted on a data file larger than it reads before its port
 * opens (issue 19): the rest is read back while it serves. Exact lookups
 * (a publish, a subscription under a prefix, a listing) are answered from
 * the file at once, a pattern over everything reads the rest first, what
 * changed meanwhile is never overwritten by an older row, and nothing is
 * lost across a further restart. In process (the reading cut into small
 * turns), then a real broker on 150,000 values with a client served while
 * it reads.
 */
import assert from "node:assert/strict";
import { BrokerCore } from "../roles/broker/mod.ts";
import { BROKER_FILE, DurableBroker, READ_BEFORE_LISTEN } from "../roles/broker/durable.ts";
import { RawJson } from "../roles/broker/raw_json.ts";
import { Store } from "../store/mod.ts";
import { FakeSink } from "./helpers/broker_sink.ts";
import { dial } from "../wire/mod.ts";
import { waitUntil } from "./helpers/binder.ts";
import { startDist } from "./helpers/dist.ts";

const MIB = 1024 * 1024;
const SITES = 50;

/** Row i: `/site{i % SITES}/dev{i}/temp` = `{"i":i}`, as the broker writes a JSON value. */
function topicOf(i: number): string {
  return `/site${i % SITES}/dev${i}/temp`;
}

async function fill(dir: string, n: number): Promise<void> {
  const store = new Store(`${dir}/${BROKER_FILE}`, { fsync: "off", tables: ["retained"] });
  const now = Math.floor(Date.now() / 1000);
  for (let i = 0; i < n; i++) store.put("retained", topicOf(i), `${now} {"i":${i}}`);
  await store.commit();
  store.close();
}

function open(dir: string, retainBytes = 64 * MIB): { c: BrokerCore; d: DurableBroker } {
  const c = new BrokerCore({ retainBytes, maxPending: 8 * MIB, maxTopics: 1e6 });
  const d = new DurableBroker(c, dir, {
    fsync: "batch",
    moveCorruptAside: false,
    warn: (m) => {
      throw new Error(`unexpected warning: ${m}`);
    },
    readBeforeListen: 100,
    readChunk: 50,
    readTurnMs: 0,
  });
  return { c, d };
}

/** A retained value as a plain value (restored ones are kept as their JSON text). */
function plain(value: unknown): unknown {
  return value instanceof RawJson ? JSON.parse(value.text) : value;
}

/** The retained values a new subscriber of `pattern` gets, by topic. */
async function snapshot(c: BrokerCore, pattern: string): Promise<Map<string, unknown>> {
  const sink = new FakeSink();
  const { sub } = c.subscribe(sink, { topic: pattern });
  sub.release();
  await waitUntil(() => !sub.snapshotting, "the snapshot sent", 5000);
  const got = new Map<string, unknown>();
  for (const m of sink.written) {
    assert.ok(m.retained && !got.has(m.topic), m.topic);
    got.set(m.topic, plain(m.value));
  }
  return got;
}

Deno.test("reading back: exact lookups come from the file at once; changes made meanwhile win", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await fill(dir, 5000);
    let { c, d } = open(dir);
    try {
      assert.ok(d.loading);
      assert.equal(d.stats().restored, 100, "only the first rows before the port opens");
      // An exact subscription, far into the file: its value at once.
      assert.deepEqual([...await snapshot(c, topicOf(4000))], [[topicOf(4000), { i: 4000 }]]);
      // A subtree's values and listing, whole, from the range of its prefix.
      assert.equal((await snapshot(c, "/site7")).size, 100);
      assert.equal(c.listTopics("/site8").topics.length, 100);
      assert.ok(d.loading, "none of that read the whole file");
      // Changes to topics not read back yet.
      assert.equal(c.publish(topicOf(4500), { i: "newer" }).created, false, "it existed");
      c.publish(topicOf(4501), "routed, not retained", false);
      c.publish(topicOf(4502), null); // cleared
      assert.equal(c.publish("/new/x", 1).created, true);
      await d.committed();
      await waitUntil(() => !d.loading, "the file read back", 10_000);
      const all = await snapshot(c, "/");
      assert.equal(all.size, 5000, "5000 - 1 cleared + 1 new");
      assert.deepEqual(all.get(topicOf(4500)), { i: "newer" }, "the older row did not win");
      assert.deepEqual(all.get(topicOf(4501)), { i: 4501 }, "its retained value stayed");
      assert.ok(!all.has(topicOf(4502)), "a cleared value is not read back again");
      assert.equal(all.get("/new/x"), 1);
      assert.deepEqual(all.get(topicOf(4999)), { i: 4999 });
    } finally {
      d.close();
    }
    // All of it is on disk, as memory held it.
    ({ c, d } = open(dir));
    try {
      await waitUntil(() => !d.loading, "the file read back", 10_000);
      const all = await snapshot(c, "/");
      assert.equal(all.size, 5000);
      assert.deepEqual(all.get(topicOf(4500)), { i: "newer" });
      assert.ok(!all.has(topicOf(4502)));
      assert.equal(d.stats().unreadable, 0);
    } finally {
      d.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("reading back: a pattern over everything, or a + first, reads the rest at once", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await fill(dir, 3000);
    for (const pattern of ["/", "/+/dev2999", "/+"]) {
      const { c, d } = open(dir);
      try {
        const { topicCount } = c.subscribe(new FakeSink(), { topic: pattern });
        assert.ok(!d.loading, pattern);
        assert.equal(c.retained.count, 3000);
        assert.equal(topicCount, pattern === "/+/dev2999" ? 1 : 3000, pattern);
      } finally {
        d.close();
      }
    }
    const { c, d } = open(dir);
    try {
      assert.equal(c.listTopics("/", 10_000).topics.length, 3000);
      assert.ok(!d.loading);
    } finally {
      d.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("reading back: past the byte budget the oldest go, in the file too", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await fill(dir, 4000);
    // Room for about half of them.
    let { c, d } = open(dir, 2000 * (24 + 8 + 64));
    let kept: number;
    try {
      c.publish(topicOf(3990), "meanwhile");
      await waitUntil(() => !d.loading, "the file read back", 10_000);
      kept = c.retained.count;
      assert.ok(kept > 1000 && kept < 3000, `${kept} kept`);
      assert.ok(c.retained.evicted > 0);
      await d.committed();
    } finally {
      d.close();
    }
    const rows = new Store(`${dir}/${BROKER_FILE}`, { fsync: "off", tables: ["retained"] });
    let n = 0;
    for (const _ of rows.rows("retained")) n++;
    rows.close();
    assert.equal(n, kept, "the file holds what memory held");
    ({ c, d } = open(dir, 2000 * (24 + 8 + 64)));
    try {
      await waitUntil(() => !d.loading, "the file read back", 10_000);
      assert.equal(c.retained.count, kept);
      assert.equal(c.retained.evicted, 0);
      const all = await snapshot(c, "/");
      assert.equal(all.get(topicOf(3990)), "meanwhile");
      assert.deepEqual(all.get(topicOf(3999)), { i: 3999 }, "the newest stayed");
      assert.ok(!all.has(topicOf(0)), "the oldest went");
    } finally {
      d.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name: "broker restarted on 150,000 retained values serves a client while it reads them back",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const n = 150_000;
    assert.ok(n > 2 * READ_BEFORE_LISTEN);
    const dir = await Deno.makeTempDir();
    try {
      await fill(dir, n);
      const args = ["broker", "--port", "0", "--data-dir", dir];
      let b = await startDist(args, { timeoutMs: 60_000 });
      try {
        const seen = new Map<string, unknown>();
        const peer = await dial({ host: "127.0.0.1", port: b.port }, {
          role: "client",
          name: "early",
          onNotification: (_method, p) => {
            const m = p as { topic: string; value: unknown };
            seen.set(m.topic, m.value);
          },
        });
        type Stats = { retained: { count: number }; store: { loading: boolean; restored: number } };
        const first = await peer.call("sys.stats") as Stats;
        assert.ok(first.store.loading, "still reading when the first client is answered");
        assert.ok(first.retained.count < n);
        const last = topicOf(n - 1);
        await peer.call("broker.subscribe", { topic: last });
        await waitUntil(() => seen.has(last), "its retained value", 10_000);
        assert.deepEqual(seen.get(last), { i: n - 1 });
        // A confirmed publish to a topic not read back yet: durable once answered.
        await peer.call("broker.publish", { topic: topicOf(n - 2), value: "newer" });
        await waitUntil(
          async () => {
            const s = await peer.call("sys.stats") as Stats;
            return !s.store.loading;
          },
          "the file read back",
          60_000,
        );
        const done = await peer.call("sys.stats") as Stats;
        assert.equal(done.retained.count, n);
        assert.equal(done.store.restored, n);
        peer.close();
        await b.stop();
        b = await startDist(args, { timeoutMs: 60_000 });
        const again = await dial({ host: "127.0.0.1", port: b.port }, {
          role: "client",
          name: "again",
          onNotification: (_method, p) => {
            const m = p as { topic: string; value: unknown };
            seen.set(m.topic, m.value);
          },
        });
        seen.clear();
        await again.call("broker.subscribe", { topic: `/site${(n - 2) % SITES}` });
        await waitUntil(() => seen.size === n / SITES, "a site's values", 20_000);
        assert.equal(seen.get(topicOf(n - 2)), "newer");
        assert.deepEqual(seen.get(topicOf(n - 2 - SITES)), { i: n - 2 - SITES });
        again.close();
      } finally {
        await b.stop();
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
