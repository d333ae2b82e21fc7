/**
 * Runs of fire-and-forget publishes to one topic in one read go through
 * the broker's lane (roles/broker/lane.ts: straight from their frames to
 * each subscription's output). Every subscriber must get what the usual
 * path gives: every value equal, in order, with its sid, whatever its
 * layout; and the run must stop where the usual path would do something
 * else (a subscription added or removed in the same read, a delivery past
 * a subscriber's frame limit, a retained publish, another topic).
 */
import assert from "node:assert/strict";
import { BrokerClient, withBroker } from "./helpers/broker.ts";
import { concat, jsonFrame, rawHandshake, RawReader, writeAll } from "./helpers/raw.ts";

const encoder = new TextEncoder();

/** Values applications publish: objects, nesting, numbers, non-ASCII text and escapes. */
const VALUES: unknown[] = [
  { id: 18223, name: "sensor-12", ok: true, temp: 21.5, unit: "C", tags: ["a", "b"] },
  { a: { b: [1, 2, { c: [true, null, 3.25] }] }, d: [[1, 2], [3, [4, [5]]]], e: { f: {} } },
  { text: "héllo ✓ 日本語 😀", "clé": 'naïve "q" \\ \n', n: -7, big: 1.5e300, small: -2e-7 },
  [0, -0.5, 12345678901234, 2 ** 40, false, null, "", [], {}],
  "plain text",
  null,
  -0.25,
];

/** A frame of the given JSON text. */
function textFrame(text: string): Uint8Array {
  const body = encoder.encode(text);
  const out = new Uint8Array(4 + body.length);
  new DataView(out.buffer).setUint32(0, body.length);
  out.set(body, 4);
  return out;
}

/** Publish `i` of a run: its value, in one of three layouts (JSON.stringify's, spaced, reordered). */
function publish(topic: string, i: number): { frame: Uint8Array; value: unknown } {
  const base = VALUES[i % VALUES.length];
  const value = base !== null && typeof base === "object" ? { seq: i, v: base } : base;
  const v = JSON.stringify(value);
  const t = JSON.stringify(topic);
  const layout = Math.floor(i / VALUES.length) % 3;
  const text = layout === 0
    ? `{"method":"broker.publish","params":{"topic":${t},"value":${v},"retain":false}}`
    : layout === 1
    ? `{"method": "broker.publish", "params": {"value": ${v}, "topic": ${t}, "retain": false}}`
    : `{"params":{"retain":false,"topic":${t},"value":${v}},"method":"broker.publish"}`;
  return { frame: textFrame(text), value };
}

async function client(port: number, hello: Record<string, unknown> = {}) {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const reader = new RawReader(conn);
  await rawHandshake(conn, reader, { heartbeat: 60_000, ...hello });
  return { conn, reader };
}

type Client = Awaited<ReturnType<typeof client>>;

async function subscribe(c: Client, topic: string, id = 1): Promise<number> {
  await writeAll(c.conn, jsonFrame({ id, method: "broker.subscribe", params: { topic } }));
  const answer = await c.reader.json(10_000);
  const sid = (answer?.result as { sid?: number } | undefined)?.sid;
  assert.equal(typeof sid, "number", JSON.stringify(answer));
  return sid!;
}

/** The next `n` deliveries (other notifications skipped), as [sid, topic, value]. */
async function deliveries(c: Client, n: number): Promise<[number, string, unknown][]> {
  const got: [number, string, unknown][] = [];
  while (got.length < n) {
    const msg = await c.reader.json(10_000);
    assert.ok(msg !== null, `only ${got.length} of ${n} deliveries came`);
    if (msg.method !== "broker.message") continue;
    const p = msg.params as { sid: number; topic: string; value: unknown };
    got.push([p.sid, p.topic, p.value]);
  }
  return got;
}

async function stats(port: number): Promise<Record<string, unknown>> {
  const c = await client(port);
  await writeAll(c.conn, jsonFrame({ id: 9, method: "sys.stats", params: {} }));
  const answer = await c.reader.json(10_000);
  c.conn.close();
  return answer?.result as Record<string, unknown>;
}

Deno.test("a run of publishes arrives whole, equal and in order, at 1 and at 4 subscribers", async () => {
  await withBroker(async (b) => {
    const subs: Client[] = [];
    const sids: number[] = [];
    for (let i = 0; i < 4; i++) {
      const c = await client(b.port);
      subs.push(c);
      // The topic itself, its subtree, a wildcard, everything.
      sids.push(await subscribe(c, ["/lane/a", "/lane", "/lane/+", "/"][i]));
    }
    const pub = await client(b.port);
    const N = 600;
    const sent = Array.from({ length: N }, (_, i) => publish("/lane/a", i));
    // In one write: the broker reads runs of hundreds of them.
    await writeAll(pub.conn, concat(sent.map((s) => s.frame)));
    for (const [k, c] of subs.entries()) {
      const got = await deliveries(c, N);
      for (let i = 0; i < N; i++) {
        assert.deepEqual(got[i], [sids[k], "/lane/a", sent[i].value], `subscriber ${k}, #${i}`);
      }
    }
    const s = await stats(b.port);
    assert.ok((s.lane_publishes as number) > N / 2, `lane publishes: ${s.lane_publishes}`);
    for (const c of [...subs, pub]) c.conn.close();
  });
});

Deno.test("a run stops at a subscribe, an unsubscribe, a retained publish and another topic", async () => {
  await withBroker(async (b) => {
    const a = await client(b.port);
    const sidA = await subscribe(a, "/r/x");
    // The publisher subscribes and unsubscribes in the middle of its own run.
    const pub = await client(b.port);
    const frames: Uint8Array[] = [];
    const expectA: unknown[] = [];
    const expectPub: unknown[] = [];
    let i = 0;
    const run = (n: number, toPub: boolean) => {
      for (let k = 0; k < n; k++, i++) {
        const p = publish("/r/x", i);
        frames.push(p.frame);
        expectA.push(p.value);
        if (toPub) expectPub.push(p.value);
      }
    };
    run(50, false);
    frames.push(jsonFrame({ id: 1, method: "broker.subscribe", params: { topic: "/r/x" } }));
    run(50, true);
    // Retained, then another topic: both go the usual way, in their place.
    frames.push(jsonFrame({ method: "broker.publish", params: { topic: "/r/x", value: "kept" } }));
    expectA.push("kept"), expectPub.push("kept");
    frames.push(jsonFrame({ method: "broker.publish", params: { topic: "/r/y", value: 1 } }));
    run(50, true);
    frames.push(jsonFrame({ id: 2, method: "broker.unsubscribe", params: { sid: sidA + 1 } }));
    run(50, false);
    await writeAll(pub.conn, concat(frames));
    const got = await deliveries(a, expectA.length);
    assert.deepEqual(got.map((d) => d[2]), expectA);
    assert.ok(got.every((d) => d[0] === sidA && d[1] === "/r/x"));
    // The publisher's own: the deliveries between its subscribe's answer and its unsubscribe's.
    const own: unknown[] = [];
    let answers = 0;
    while (answers < 2) {
      const msg = await pub.reader.json(10_000);
      assert.ok(msg !== null, `the publisher got ${own.length} deliveries and ${answers} answers`);
      if (msg.method === "broker.message") {
        assert.equal(answers, 1, "a delivery outside its subscription");
        own.push((msg.params as { value: unknown }).value);
      } else if ("result" in msg) answers++;
    }
    assert.deepEqual(own, expectPub);
    a.conn.close(), pub.conn.close();
  });
});

Deno.test("a run's delivery past a subscriber's frame limit is refused to it alone", async () => {
  await withBroker(async (b) => {
    const small = await client(b.port, { max_frame: 1024 });
    const sidSmall = await subscribe(small, "/f");
    const big = await client(b.port);
    const sidBig = await subscribe(big, "/f");
    const pub = await client(b.port);
    const values = Array.from({ length: 40 }, (_, i) => (i === 30 ? "x".repeat(2000) : { i }));
    const frame = (value: unknown) =>
      jsonFrame({ method: "broker.publish", params: { topic: "/f", value, retain: false } });
    await writeAll(pub.conn, concat(values.map(frame)));
    const all = await deliveries(big, values.length);
    assert.deepEqual(all.map((d) => d[2]), values);
    assert.ok(all.every((d) => d[0] === sidBig));
    // The small one: every value but the large one, and a notice of it in its place.
    const seen: unknown[] = [];
    let notices = 0;
    while (seen.length < values.length - 1) {
      const msg = await small.reader.json(10_000);
      assert.ok(msg !== null, `got ${seen.length}`);
      if (msg.method === "broker.message") {
        assert.equal((msg.params as { sid: number }).sid, sidSmall);
        seen.push((msg.params as { value: unknown }).value);
      } else if (msg.method === "broker.undeliverable") {
        assert.equal(seen.length, 30, "the notice comes in the large value's place");
        notices++;
      }
    }
    assert.deepEqual(seen, values.filter((_, i) => i !== 30));
    assert.equal(notices, 1);
    for (const c of [small, big, pub]) c.conn.close();
  });
});

Deno.test("a MessagePack run arrives equal and in order; a JSON subscriber beside it too", async () => {
  await withBroker(async (b) => {
    const mp1 = await BrokerClient.connect(b.port, "msgpack");
    const mp2 = await BrokerClient.connect(b.port, "msgpack");
    const json = await BrokerClient.connect(b.port, "json");
    const sid1 = (await mp1.subscribe("/m/a")).sid;
    const sid2 = (await mp2.subscribe("/m")).sid;
    const sidJ = (await json.subscribe("/m/b")).sid;
    const pub = await BrokerClient.connect(b.port, "msgpack");
    const N = 400;
    const values = Array.from({ length: N }, (_, i) => publish("/m", i).value);
    // One synchronous loop: the client writes them together, the broker reads runs.
    for (const v of values) pub.publish("/m/a", v, false);
    for (const v of values) pub.publish("/m/b", v, false);
    const one = await mp1.received(N, 10_000);
    const two = await mp2.received(2 * N, 10_000);
    const j = await json.received(N, 10_000);
    const strip = (d: { sid: number; topic: string; value: unknown }) => [d.sid, d.topic, d.value];
    assert.deepEqual(one.map(strip), values.map((v) => [sid1, "/m/a", v]));
    assert.deepEqual(
      two.map(strip),
      [...values.map((v) => [sid2, "/m/a", v]), ...values.map((v) => [sid2, "/m/b", v])],
    );
    assert.deepEqual(j.map(strip), values.map((v) => [sidJ, "/m/b", v]));
    const s = await pub.stats();
    assert.ok((s.lane_publishes as number) > N / 2, `lane publishes: ${s.lane_publishes}`);
    for (const c of [mp1, mp2, json, pub]) c.close();
  });
});
