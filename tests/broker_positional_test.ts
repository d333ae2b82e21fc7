/**
 * Publishes with positional params (`["/t", value, true]`, which the
 * contract reads as `{topic, value, retain}`) are read as bytes as the
 * object form is: hostile34 Z3a retained 60 such 1 MB `[{},{},…]` and the
 * broker, which parsed each into 333,332 objects and kept them, reached
 * RSS 1,431 MiB while it counted 114 MiB.
 */
import assert from "node:assert/strict";
import { readPublish, TopicCache } from "../wire/mod.ts";
import { startDist } from "./helpers/dist.ts";
import { BrokerClient } from "./helpers/broker.ts";
import { frame, jsonFrame, RawReader, sleep, writeAll } from "./helpers/raw.ts";

const MIB = 1024 * 1024;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

function read(text: string) {
  const p = readPublish(encoder.encode(text), new TopicCache());
  return p && { topic: p.topic, value: decoder.decode(p.value), retain: p.retain, id: p.id };
}

Deno.test("readPublish() reads positional params as bytes: [topic, value] and [topic, value, retain]", () => {
  assert.deepEqual(read('{"method":"broker.publish","params":["/t", {"a": 1}]}'), {
    topic: "/t",
    value: '{"a": 1}',
    retain: true,
    id: undefined,
  });
  assert.deepEqual(read('{"id":7,"method":"broker.publish","params":[ "a/b" ,[1, 2] , false ]}'), {
    topic: "a/b",
    value: "[1, 2]",
    retain: false,
    id: 7,
  });
  assert.deepEqual(read('{"params":["/\\u00e9t\\u00e9","x",true],"method":"broker.publish"}'), {
    topic: "/été",
    value: '"x"',
    retain: true,
    id: undefined,
  });
  // Left to the decoder, which answers them as it always has.
  for (
    const text of [
      '{"method":"broker.publish","params":["/t"]}',
      '{"method":"broker.publish","params":["/t",1,null]}',
      '{"method":"broker.publish","params":["/t",1,true,4]}',
      '{"method":"broker.publish","params":[7,1]}',
      '{"method":"broker.publish","params":["/t",NaN]}',
      '{"method":"broker.publish","params":["/t",1,]}',
      '{"method":"broker.publish","params":["/t" 1]}',
    ]
  ) assert.equal(read(text), undefined, text);
});

/** The answer to `id` (heartbeats skipped). */
async function answer(r: RawReader, id: number): Promise<Record<string, unknown> | null> {
  for (let i = 0; i < 100; i++) {
    const msg = await r.json(30_000);
    if (msg === null || msg.id === id) return msg;
  }
  return null;
}

function rssOf(pid: number): number {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  return Number(status.match(/VmRSS:\s+(\d+)/)![1]) * 1024;
}

Deno.test("broker: 30 retained 1 MB [{},{},…] with positional params keep RSS within 1.5× what is counted", async () => {
  const b = await startDist(["broker", "--port=0"]);
  let watch: BrokerClient | undefined;
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: b.port });
  try {
    watch = await BrokerClient.connect(b.port);
    const before = rssOf(b.child.pid);
    const r = new RawReader(conn);
    await writeAll(
      conn,
      jsonFrame({ op: "hello", v: 1, codec: "json", role: "client", name: "p" }),
    );
    await r.json(5000);
    const text = "[" + "{},".repeat(Math.floor((MIB - 200) / 3)).slice(0, -1) + "]";
    for (let id = 1; id <= 30; id++) {
      await writeAll(
        conn,
        frame(`{"id":${id},"method":"broker.publish","params":["/amp/${id}",${text},true]}`),
      );
      const got = await answer(r, id);
      assert.deepEqual(got?.result, { topic: `/amp/${id}`, deliveries: 0 }, JSON.stringify(got));
    }
    // A value published so reaches a subscriber as it was.
    await writeAll(
      conn,
      frame('{"id":99,"method":"broker.publish","params":["/amp/s",[ {} , 1 ]]}'),
    );
    assert.equal((await answer(r, 99))?.id, 99);
    const sub = await BrokerClient.connect(b.port);
    await sub.subscribe("/amp/s", {});
    const [got] = await sub.received(1, 5000);
    assert.deepEqual(got.value, [{}, 1]);
    sub.close();
    let grown = Infinity;
    let counted = 0;
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline) {
      const stats: Record<string, unknown> = await watch.stats();
      counted = (stats.memory as { bytes: number }).bytes;
      assert.equal((stats.retained as { count: number }).count, 31);
      grown = rssOf(b.child.pid) - before;
      if (grown <= 1.5 * counted) break;
      await sleep(200);
    }
    assert.ok(
      grown <= 1.5 * counted,
      `RSS grew ${(grown / MIB).toFixed(0)} MiB for ${(counted / MIB).toFixed(0)} MiB counted`,
    );
  } finally {
    conn.close();
    watch?.close();
    await b.stop();
  }
});
