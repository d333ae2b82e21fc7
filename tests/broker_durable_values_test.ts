/**
 * Every shape of value kept by `--data-dir` and read back after a restart,
 * whatever path it came by: confirmed publishes (requests with an id, which
 * the byte fast path leaves to the decoder), fire-and-forget ones (JSON on
 * the fast path, kept as their text; MessagePack retained under
 * `--data-dir`, decoded), from JSON and MessagePack publishers, to
 * subscribers of both codecs, equal in value. Binary values and dates
 * (MessagePack only) too.
 */
import assert from "node:assert/strict";
import { BrokerClient, startBroker } from "./helpers/broker.ts";
import { SHAPES } from "./helpers/shapes.ts";

/** Values only MessagePack carries. */
const BINARY: Record<string, unknown> = {
  bytes: new Uint8Array([0, 1, 2, 127, 128, 255]),
  date: new Date("2026-12-04T22:40:00.125Z"),
  mixed: { at: new Date(0), raw: new Uint8Array([9, 8]), list: [new Uint8Array(0), "x"] },
};

/** A leading U+FEFF, in a string and a key, short and long: kept (hostile review 40a T2, T8). */
const BOM = {
  "\ufeffk": "\ufeffv",
  long: "\ufeff" + "q".repeat(300),
  ["\ufeff" + "k".repeat(250)]: ["\ufeffa"],
};

/** Publishes every value of `values` under `prefix` both ways; returns topic → value. */
async function publishAll(
  client: BrokerClient,
  prefix: string,
  values: Record<string, unknown>,
): Promise<Map<string, unknown>> {
  const want = new Map<string, unknown>();
  for (const [shape, value] of Object.entries(values)) {
    await client.confirm(`${prefix}/${shape}/confirmed`, value);
    client.publish(`${prefix}/${shape}/notified`, value);
    client.publish(`${prefix}/${shape}/flagged`, value, true);
    for (const how of ["confirmed", "notified", "flagged"]) {
      want.set(`${prefix}/${shape}/${how}`, value);
    }
  }
  // Answered once its commit is done: the notifications before it on this connection are in it.
  await client.confirm(`${prefix}/barrier`, 0);
  want.set(`${prefix}/barrier`, 0);
  return want;
}

/** The retained values under `prefix` a new subscriber of `codec` gets, by topic. */
async function retained(port: number, codec: string, prefix: string, count: number) {
  const late = await BrokerClient.connect(port, codec);
  try {
    await late.subscribe(prefix);
    const got = await late.received(count);
    assert.ok(got.every((d) => d.retained));
    return new Map(got.map((d) => [d.topic, d.value]));
  } finally {
    late.close();
  }
}

Deno.test("broker --data-dir: every value shape, by every publish path and codec, is the same after a restart", async () => {
  const dir = await Deno.makeTempDir();
  try {
    let b = await startBroker({ dataDir: dir });
    const want = new Map<string, unknown>();
    const binary = new Map<string, unknown>();
    try {
      for (const codec of ["json", "msgpack"]) {
        const client = await BrokerClient.connect(b.port, codec);
        try {
          for (const [k, v] of await publishAll(client, `/d/${codec}`, { ...SHAPES, bom: BOM })) {
            want.set(k, v);
          }
          if (codec === "msgpack") {
            for (const [k, v] of await publishAll(client, "/x", BINARY)) binary.set(k, v);
          }
        } finally {
          client.close();
        }
      }
    } finally {
      await b.stop();
    }
    b = await startBroker({ dataDir: dir });
    try {
      for (const codec of ["json", "msgpack"]) {
        const there = await retained(b.port, codec, "/d", want.size);
        assert.equal(there.size, want.size, codec);
        for (const [topic, value] of want) {
          assert.deepEqual(there.get(topic), value, `${codec} ${topic}`);
        }
      }
      const there = await retained(b.port, "msgpack", "/x", binary.size);
      for (const [topic, value] of binary) assert.deepEqual(there.get(topic), value, topic);
    } finally {
      await b.stop();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
