/**
 * The byte-level fast paths of publishes and deliveries (wire/pubsub_json.ts):
 * what they take, what they leave to the ordinary decoder, that the
 * broker's writer and the subscriber's reader agree, and that a fast
 * publish keeps its place among the other messages of a read.
 */
import assert from "node:assert/strict";
import {
  type FramePublish,
  jsonCodec,
  readDelivery,
  readPublish,
  TopicCache,
} from "../wire/mod.ts";
import { readIdFirst } from "../wire/pubsub_json.ts";
import { deliveryHead, deliverySize, sidTail, writeDelivery } from "../roles/broker/frames.ts";
import { OutBuffer } from "../wire/mod.ts";
import { Message } from "../roles/broker/mod.ts";
import { RawJson } from "../roles/broker/raw_json.ts";
import { BrokerClient, rawSubscriber, withBroker } from "./helpers/broker.ts";
import { concat, jsonFrame, prng, rawHandshake, RawReader, writeAll } from "./helpers/raw.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const text = (b: Uint8Array) => decoder.decode(b);
const json = (msg: unknown) => encoder.encode(JSON.stringify(msg));
/** What readPublish read, the value as text. */
const seen = (p: FramePublish | undefined) =>
  p && { topic: p.topic, value: text(p.value), retain: p.retain, id: p.id, canonical: p.canonical };

Deno.test("readPublish() reads the canonical layout, with or without retain", () => {
  const topics = new TopicCache();
  const a = readPublish(
    json({ method: "broker.publish", params: { topic: "/a/b", value: "hello world" } }),
    topics,
  );
  assert.deepEqual(seen(a), {
    topic: "/a/b",
    value: '"hello world"',
    retain: true,
    id: undefined,
    canonical: true,
  });
  const b = readPublish(
    json({ method: "broker.publish", params: { topic: "t", value: "x", retain: false } }),
    topics,
  );
  assert.deepEqual(seen(b), {
    topic: "t",
    value: '"x"',
    retain: false,
    id: undefined,
    canonical: true,
  });
  const c = readPublish(
    json({ method: "broker.publish", params: { topic: "t", value: "y", retain: true } }),
    topics,
  );
  assert.equal(c?.retain, true);
});

Deno.test("readPublish() reads any value, member order and spacing, as its exact text", () => {
  const topics = new TopicCache();
  const cases: [string, string, string, boolean, boolean?][] = [
    ['{"method":"broker.publish","params":{"topic":"/a","value":42}}', "/a", "42", true, true],
    [
      '{"params":{"value":{"x":[1,"é\\n"]},"retain":false,"topic":"/é"},"method":"broker.publish"}',
      "/é",
      '{"x":[1,"é\\n"]}',
      false,
    ],
    [
      ' { "method" : "broker.publish" ,\n "params" : { "topic" : "a\\"b" , "value" : [ null ] } } ',
      'a"b',
      "[ null ]",
      true,
    ],
    ['{"method":"broker.publish","params":{"topic":"","value":"x"}}', "", '"x"', true],
  ];
  for (const [frame, topic, value, retain, canonical = false] of cases) {
    const p = readPublish(encoder.encode(frame), topics);
    assert.deepEqual(seen(p), { topic, value, retain, id: undefined, canonical }, frame);
  }
  // A confirmed publish in the notification's layout is read in place too, but is not canonical.
  const request = readPublish(
    json({ id: 7, method: "broker.publish", params: { topic: "/a", value: 1 } }),
    topics,
  );
  assert.deepEqual(seen(request), {
    topic: "/a",
    value: "1",
    retain: true,
    id: 7,
    canonical: false,
  });
});

Deno.test("readPublish() leaves anything else to the ordinary decoder", () => {
  const topics = new TopicCache();
  const others: string[] = [
    '{"method":"broker.publish","params":{"topic":"/a","value":"x","retain":"yes"}}',
    '{"method":"broker.publish","params":{"topic":"/a","value":"x","other":1}}',
    '{"method":"broker.publish","params":{"topic":"/a","value":"x","value":"y"}}',
    '{"method":"broker.publish","params":{"topic":1,"value":"x"}}',
    '{"method":"broker.publish","params":{"topic":"/a"}}',
    '{"method":"broker.subscribe","params":{"topic":"/a","value":"x"}}',
    '{"method":"broker.publish","params":{"topic":"/a","value":"\\ud800"}}',
    '{"method":"broker.publish","params":{"topic":"/a","value":1e400}}',
    '{"method":"broker.publish","params":{"topic":"/a","value":[1,]}}',
    '{"method":"broker.publish","params":{"topic":"/a","value":"x"}} x',
    '{"method":"broker.publish","params":{"topic":"/a","value":"x"}',
    `{"method":"broker.publish","params":{"topic":"/a","value":${"[".repeat(63)}${
      "]".repeat(63)
    }}}`,
  ];
  for (const msg of others) {
    assert.equal(readPublish(encoder.encode(msg), topics), undefined, msg);
  }
  // At the nesting limit exactly: taken (the message and params are two levels).
  const deepest = `{"method":"broker.publish","params":{"topic":"/a","value":${"[".repeat(62)}${
    "]".repeat(62)
  }}}`;
  assert.ok(readPublish(encoder.encode(deepest), topics) !== undefined);
});

Deno.test("readPublish() takes only what the decoder reads as a publish, with the same topic, value and retain (fuzz)", () => {
  const topics = new TopicCache();
  const random = prng(17);
  const seeds = [
    // The canonical layouts (JSON.stringify's), then others.
    '{"method":"broker.publish","params":{"topic":"/a/b","value":{"n":-2.5e3,"t":"h\u00e9 "x"","l":[true,null,{}]}}}',
    '{"method":"broker.publish","params":{"topic":"/s","value":"plain text","retain":false}}',
    '{"method":"broker.publish","params":{"topic":"/é","value":[[1,[2]],{"k":"日本"}],"retain":true}}',
    '{ "params" : { "retain" : false , "value" : { "a" : [ 1 , 2 ] } , "topic" : "/x" } , "method" : "broker.publish" }',
  ];
  let taken = 0;
  for (let round = 0; round < 6000; round++) {
    const bytes = encoder.encode(seeds[round % seeds.length]);
    for (let k = Math.floor(random() * 3); k > 0; k--) {
      bytes[Math.floor(random() * bytes.length)] = Math.floor(random() * 256);
    }
    const p = readPublish(bytes, topics);
    if (p === undefined) continue;
    let decoded: { method: string; params: { topic: unknown; value: unknown; retain?: unknown } };
    try {
      decoded = jsonCodec.decode(bytes) as typeof decoded;
    } catch (err) {
      throw new Error(`readPublish took what the decoder refuses: ${text(bytes)}: ${err}`);
    }
    taken++;
    const { params } = decoded;
    assert.equal(decoded.method, "broker.publish", text(bytes));
    assert.deepEqual(Object.keys(decoded).sort(), ["method", "params"], text(bytes));
    assert.equal(p.topic, params.topic, text(bytes));
    assert.deepEqual(JSON.parse(text(p.value)), params.value, text(bytes));
    assert.equal(p.retain, params.retain ?? true, text(bytes));
  }
  assert.ok(taken > 1000, `the unchanged seeds and some mutants are taken (${taken})`);
});

Deno.test("readDelivery() reads back what the broker writes, whatever the sid", () => {
  const topics = new TopicCache();
  for (
    const [value, retained, sid] of [["plain", false, 1], [{ a: [1, "é"] }, true, 123456]] as const
  ) {
    const headed = new Message("/t/x", RawJson.borrow(json(value)), retained);
    deliveryHead(headed, "json"); // encoded for a queue: written from its head
    /** A value as the fast path borrows it from a publish frame. */
    const fromFrame = (topic: string, retain?: boolean) => {
      const p = readPublish(
        json({ method: "broker.publish", params: { topic, value, retain } }),
        new TopicCache(),
      )!;
      assert.ok(p.canonical);
      return RawJson.borrowFrame(p.frame, p.valueStart, p.valueEnd, p.topic);
    };
    for (
      const msg of [
        new Message("/t/x", value, retained), // a decoded value: encoded once, as a head
        new Message("/t/x", RawJson.borrow(json(value)), retained), // JSON text: written as parts
        headed,
        // A canonical publish frame of the same topic: written from the frame.
        new Message("/t/x", fromFrame("/t/x"), retained),
        new Message("/t/x", fromFrame("/t/x", false), retained),
        new Message("/t/x", fromFrame("/t/x", true), retained),
        // Of another spelling of it: written as parts.
        new Message("/t/x", fromFrame("t/x"), retained),
      ]
    ) {
      const tail = sidTail(sid, "json");
      const out = new OutBuffer(0);
      writeDelivery(out, msg, "json", tail);
      assert.equal(out.length, deliverySize(msg, "json", tail));
      const length = new DataView(out.bytes.buffer).getUint32(0);
      assert.equal(length, out.length - 4, "the length prefix");
      const frame = out.bytes.slice(4, out.length);
      // `retained` is written only when true.
      assert.deepEqual(JSON.parse(text(frame)), {
        method: "broker.message",
        params: retained ? { topic: "/t/x", value, retained, sid } : { topic: "/t/x", value, sid },
      });
      const d = readDelivery(frame, topics);
      assert.ok(d !== undefined);
      assert.deepEqual({ ...d, value: JSON.parse(text(d.value)) }, {
        sid,
        topic: "/t/x",
        value,
        retained,
      });
    }
  }
  // An older broker's `"retained":false` is read too; another member order is not.
  const older = json({
    method: "broker.message",
    params: { topic: "/a", value: 1, retained: false, sid: 7 },
  });
  assert.deepEqual({
    ...readDelivery(older, topics)!,
    value: text(readDelivery(older, topics)!.value),
  }, {
    sid: 7,
    topic: "/a",
    value: "1",
    retained: false,
  });
  const other = json({ method: "broker.message", params: { sid: 1, topic: "/a", value: 1 } });
  assert.equal(readDelivery(other, topics), undefined);
});

Deno.test("a fast publish keeps its place after a subscribe in the same read", async () => {
  await withBroker(async (b) => {
    const raw = await Deno.connect({ hostname: "127.0.0.1", port: b.port });
    const reader = new RawReader(raw);
    try {
      await rawHandshake(raw, reader);
      await writeAll(
        raw,
        concat([
          jsonFrame({ id: 1, method: "broker.subscribe", params: { topic: "/own" } }),
          jsonFrame({ method: "broker.publish", params: { topic: "/own", value: "mine" } }),
        ]),
      );
      const answer = await reader.json();
      const sid = (answer?.result as { sid: number }).sid;
      assert.equal(answer?.id, 1);
      const created = await reader.json();
      assert.deepEqual(created, { method: "broker.topic_created", params: { sid, topic: "/own" } });
      const delivery = await reader.json();
      assert.deepEqual(delivery?.params, { topic: "/own", value: "mine", sid });
    } finally {
      raw.close();
    }
  });
});

Deno.test("a fast publish reaches JSON and MessagePack subscribers and is retained", async () => {
  await withBroker(async (b) => {
    const j = await BrokerClient.connect(b.port, "json");
    const m = await BrokerClient.connect(b.port, "msgpack");
    const pub = await BrokerClient.connect(b.port, "json");
    try {
      await j.subscribe("/f");
      await m.subscribe("/f");
      pub.publish("/f/1", "fast path value");
      for (const c of [j, m]) {
        assert.deepEqual((await c.received(1))[0], {
          sid: c.deliveries[0].sid,
          topic: "/f/1",
          value: "fast path value",
        });
      }
      const late = await BrokerClient.connect(b.port, "msgpack");
      try {
        await late.subscribe("/f");
        assert.equal((await late.received(1))[0].value, "fast path value");
        assert.equal(late.deliveries[0].retained, true);
      } finally {
        late.close();
      }
    } finally {
      for (const c of [j, m, pub]) c.close();
    }
  });
});

Deno.test("fast publishes queued for a slow subscriber arrive intact, in order", async () => {
  await withBroker(async (b) => {
    let droppedBefore = 0;
    for (const policy of ["drop-oldest", "latest"]) {
      const { conn: raw, reader } = await rawSubscriber(b.port, { topic: "/q", policy });
      const pub = await BrokerClient.connect(b.port);
      try {
        // Not reading for now: about 12 MB, past the kernel's buffers and max-pending.
        const n = 6000;
        for (let i = 0; i < n; i++) {
          pub.publish(`/q/${i % 3}`, `${String(i).padStart(6, "0")}${"v".repeat(2000)}`);
          if (i % 200 === 199) await pub.peer.conn.drained(0);
        }
        await pub.confirm("/q/end", "end");
        const dropped = (await pub.stats()).dropped as number;
        assert.ok(dropped > droppedBefore, `${policy}: the queue was full and dropped some`);
        droppedBefore = dropped;
        // Now read everything: whatever survived is whole, and in publish order per topic.
        const last = [-1, -1, -1];
        let seenEnd = false;
        while (!seenEnd) {
          const m = await reader.json(5000);
          assert.ok(m !== null, "connection still open");
          if (m.method !== "broker.message") continue;
          const p = m.params as { topic: string; value: string };
          if (p.topic === "/q/end") {
            seenEnd = true;
            continue;
          }
          const t = Number(p.topic.slice(3));
          const seq = Number(p.value.slice(0, 6));
          assert.equal(p.value.slice(6), "v".repeat(2000), "the value is intact");
          assert.equal(seq % 3, t);
          assert.ok(seq > last[t], `${policy}: in order on ${p.topic}`);
          last[t] = seq;
        }
        assert.deepEqual(last, [5997, 5998, 5999], `${policy}: the newest of each topic arrived`);
      } finally {
        raw.close();
        pub.close();
      }
    }
  }, { maxPending: 512 * 1024 });
});

Deno.test("readPublish() reads a confirmed publish's id: a plain integer or string, first or anywhere", () => {
  const topics = new TopicCache();
  const read = (text: string) => {
    const p = readPublish(encoder.encode(text), topics);
    return p && { id: p.id, topic: p.topic, value: decoder.decode(p.value), retain: p.retain };
  };
  const params = '"params":{"topic":"/c","value":{"a":[1,"é"]},"retain":false}';
  assert.deepEqual(read(`{"id":7,"method":"broker.publish",${params}}`), {
    id: 7,
    topic: "/c",
    value: '{"a":[1,"é"]}',
    retain: false,
  });
  assert.equal(read(`{"id":"req-1","method":"broker.publish",${params}}`)?.id, "req-1");
  assert.equal(read(`{"method":"broker.publish",${params}, "id" : -3}`)?.id, -3);
  assert.equal(read(`{"method":"broker.publish",${params}}`)?.id, undefined);
  // Left to the decoder, which answers or refuses them as it always does.
  for (const id of ["1.5", "null", '"a\\"b"', "12345678901234567", "[1]"]) {
    assert.equal(read(`{"id":${id},"method":"broker.publish",${params}}`), undefined, id);
  }
  assert.equal(read(`{"id":1,"id":2,"method":"broker.publish",${params}}`), undefined);
});

Deno.test("a confirmed publish as clients write it (id first) is read by the id-first reader, not the general one", () => {
  const topics = new TopicCache();
  const read = (text: string) => {
    const p = readIdFirst(encoder.encode(text), topics);
    return p && { id: p.id, topic: p.topic, value: decoder.decode(p.value), retain: p.retain };
  };
  // What the client library writes for peer.call("broker.publish", …): JSON.stringify's layout.
  const sent = json({
    id: 12,
    method: "broker.publish",
    params: { topic: "/c", value: { a: [1, "é"], n: null }, retain: false },
  });
  assert.deepEqual(read(decoder.decode(sent)), {
    id: 12,
    topic: "/c",
    value: '{"a":[1,"é"],"n":null}',
    retain: false,
  });
  assert.deepEqual(
    read('{"id":"r-9","method":"broker.publish","params":{"topic":"/c","value":7}}'),
    {
      id: "r-9",
      topic: "/c",
      value: "7",
      retain: true,
    },
  );
  // And readPublish gives the same, as the general reader would.
  assert.deepEqual(seen(readPublish(sent, topics)), {
    topic: "/c",
    value: '{"a":[1,"é"],"n":null}',
    retain: false,
    id: 12,
    canonical: false,
  });
  // Laid out otherwise: null (the general reader's); a bad value: undefined (the decoder's).
  assert.equal(read('{"id":1 ,"method":"broker.publish","params":{"topic":"/c","value":7}}'), null);
  assert.equal(read('{"id":1,"params":{"topic":"/c","value":7},"method":"broker.publish"}'), null);
  assert.equal(
    read('{"id":1,"method":"broker.publish","params":{"topic":"/c","value":[1,]}}'),
    undefined,
  );
});

Deno.test("confirmed publishes go through as bytes, in both codecs, and are answered as any request", async () => {
  await withBroker(async (b) => {
    const { conn: raw, reader } = await rawSubscriber(b.port, { topic: "/c" });
    const m = await BrokerClient.connect(b.port, "msgpack");
    const pub = await BrokerClient.connect(b.port, "msgpack");
    const jpub = await Deno.connect({ hostname: "127.0.0.1", port: b.port });
    const jreader = new RawReader(jpub);
    try {
      await m.subscribe("/c");
      await rawHandshake(jpub, jreader);
      // The value's text as the publisher wrote it (spacing, 1.0) reaches a JSON
      // subscriber unchanged: nothing decoded it and wrote it again.
      const text = '{ "n" : 1.0, "s" : "h\\u00e9 ✓" }';
      const request =
        `{"id":41,"method":"broker.publish","params":{"topic":"/c/j","value":${text}}}`;
      const bytes = encoder.encode(request);
      const framed = new Uint8Array(4 + bytes.length);
      new DataView(framed.buffer).setUint32(0, bytes.length);
      framed.set(bytes, 4);
      await writeAll(jpub, framed);
      const answer = await jreader.json();
      assert.equal(answer?.id, 41);
      assert.deepEqual(answer?.result, { topic: "/c/j", deliveries: 2 });
      let frame = await reader.frame();
      while (frame !== null && !decoder.decode(frame).includes('"broker.message"')) {
        frame = await reader.frame(); // the topic_created notice first
      }
      assert.ok(frame !== null);
      assert.ok(decoder.decode(frame).includes(`"value":${text},"sid":`));
      assert.deepEqual((await m.received(1))[0].value, { n: 1, s: "hé ✓" });
      // A MessagePack request: answered with its id; a bad topic is an error, not a cut.
      assert.deepEqual(await pub.confirm("/c/m", { list: [1, null, "ü"] }, false), {
        topic: "/c/m",
        deliveries: 2,
      });
      assert.deepEqual((await m.received(2))[1].value, { list: [1, null, "ü"] });
      await assert.rejects(pub.confirm("no//good", 1), /BAD_REQUEST|topic/i);
      await writeAll(
        jpub,
        jsonFrame({ id: 42, method: "broker.publish", params: { topic: "", value: 1 } }),
      );
      const refused = await jreader.json();
      assert.equal(refused?.id, 42);
      assert.equal((refused?.error as { code: string }).code, "BAD_REQUEST");
      // Still served.
      assert.equal((await pub.confirm("/c/m", 2, false))?.deliveries, 2);
    } finally {
      raw.close();
      jpub.close();
      m.close();
      pub.close();
    }
  });
});

Deno.test("confirmed publishes past the in-flight limit wait their turn and are all answered, after the commit with a data dir", async () => {
  const dir = await Deno.makeTempDir({ prefix: "dist-confirm-" });
  try {
    await withBroker(async (b) => {
      const raw = await Deno.connect({ hostname: "127.0.0.1", port: b.port });
      const reader = new RawReader(raw);
      try {
        await rawHandshake(raw, reader);
        // 3,000 requests in one write, far more than may be in flight on a connection.
        const n = 3000;
        const frames = [];
        for (let i = 1; i <= n; i++) {
          frames.push(jsonFrame({
            id: i,
            method: "broker.publish",
            params: { topic: `/r/${i % 7}`, value: { i, text: "ü".repeat(20) } },
          }));
        }
        await writeAll(raw, concat(frames));
        const ids = new Set<number>();
        while (ids.size < n) {
          const answer = await reader.json(10_000);
          assert.ok(answer !== null, `answers stopped at ${ids.size}`);
          assert.ok(answer.error === undefined, JSON.stringify(answer));
          ids.add(answer.id as number);
        }
      } finally {
        raw.close();
      }
    }, { dataDir: dir });
    // Every retained value is on disk: a broker on the same directory has them.
    await withBroker(async (b) => {
      const c = await BrokerClient.connect(b.port);
      try {
        await c.subscribe("/r");
        const got = await c.received(7);
        assert.deepEqual(got.map((d) => (d.value as { i: number }).i).sort((x, y) => x - y), [
          2994,
          2995,
          2996,
          2997,
          2998,
          2999,
          3000,
        ]);
      } finally {
        c.close();
      }
    }, { dataDir: dir });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
