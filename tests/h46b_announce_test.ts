/**
 * hostile review 46b M-B9 (medium): a publish that makes a topic tells every
 * subscription covering it, `broker.topic_created`, at once and all in the
 * same turn (core.ts #announce), queue group members included, outside the
 * fan-out's 8,192 deliveries a turn and its backpressure. A queue group of
 * 60,000 members on `/n` (6 connections of one source, within the default
 * caps: 10,000 a connection, 62,500 a source) costs a publish to an existing
 * topic one delivery, but each new topic 60,000 notices: bursts of 200 small
 * publishes to new topics held another client's PINGRESP 2.6 s (quiet: 13
 * ms; load 21), bursts of 400 1.4–1.75 s (quiet 8–20 ms; load 7); with
 * #announce returning at once, the same run passes.
 */
import assert from "node:assert/strict";
import { startDist } from "./helpers/dist.ts";
import { mqttOpts as opts, RawMqtt } from "./helpers/mqtt.ts";
import { concat, jsonFrame, rawHandshake, RawReader, sleep, writeAll } from "./helpers/raw.ts";
import { BrokerClient } from "./helpers/broker.ts";

const CONNECTIONS = 6;
const PER_CONNECTION = 10_000;

/** PINGREQ → PINGRESP times (ms), one every 20 ms, while `busy` runs (at least `ms`). */
async function pings(c: RawMqtt, ms: number): Promise<number[]> {
  const times: number[] = [];
  for (const end = Date.now() + ms; Date.now() < end;) {
    const t = performance.now();
    await c.send({ cmd: "pingreq" } as never);
    await c.next("pingresp", 30_000);
    times.push(performance.now() - t);
    await sleep(20);
  }
  return times.sort((a, b) => a - b);
}

const median = (xs: number[]) => xs[xs.length >> 1];

Deno.test(
  "broker: new topics under a large queue group do not hold other clients up",
  opts,
  async () => {
    const b = await startDist([
      "broker",
      ...["--port", "0", "--mqtt-port", "0", "--heartbeat", "30000"],
    ]);
    const m = b.stderr().match(/MQTT on 127\.0\.0\.1:(\d+)/);
    assert.ok(m, b.stderr());
    const conns: Deno.Conn[] = [];
    let pinger: RawMqtt | undefined;
    let pub: BrokerClient | undefined;
    try {
      // The group's members: raw connections that read every byte and parse nothing.
      let answered = 0;
      for (let k = 0; k < CONNECTIONS; k++) {
        const conn = await Deno.connect({ hostname: "127.0.0.1", port: b.port });
        conns.push(conn);
        const reader = new RawReader(conn);
        await rawHandshake(conn, reader, { heartbeat: 30_000 });
        const frames = Array.from({ length: PER_CONNECTION }, (_, i) =>
          jsonFrame({
            id: i + 1,
            method: "broker.subscribe",
            params: { topic: "/n", group: "g" },
          }));
        await writeAll(conn, concat(frames));
        (async () => {
          const buf = new Uint8Array(1 << 20);
          const text = new TextDecoder();
          while (true) {
            const n = await conn.read(buf).catch(() => null);
            if (n === null) return;
            // Count the subscribe answers ("sid" appears in each; notices come only later).
            const chunk = text.decode(buf.subarray(0, n));
            if (answered < CONNECTIONS * PER_CONNECTION) {
              answered += chunk.split('"topic_count"').length - 1;
            }
          }
        })();
      }
      for (let t = 0; answered < CONNECTIONS * PER_CONNECTION; t++) {
        if (t > 4000) throw new Error(`${answered} subscribes answered`);
        await sleep(10);
      }
      pinger = await RawMqtt.connect(Number(m[1]), { clientId: "pinger" }, 4);
      const quiet = await pings(pinger, 2000);
      pub = await BrokerClient.connect(b.port, "json", "publisher");
      // New topics under /n, as a device fleet makes them (or the group's owner itself), in bursts.
      let publishing = true;
      const publisher = (async () => {
        for (let round = 0; publishing; round++) {
          for (let i = 0; i < 400; i++) pub!.publish(`/n/device-${round}-${i}`, i, false);
          await pub!.stats();
        }
      })();
      const during = await pings(pinger, 6000);
      publishing = false;
      await publisher;
      const longest = (xs: number[]) => xs[xs.length - 1];
      const bound = Math.max(500, 4 * longest(quiet));
      assert.ok(
        longest(during) < bound,
        `longest PINGRESP ${longest(during).toFixed(0)} ms while new topics came (quiet: ${
          longest(quiet).toFixed(0)
        } ms; ${during.length} pings in 6 s, p50 ${median(during).toFixed(1)} ms)`,
      );
    } finally {
      pub?.close();
      await pinger?.end();
      for (const c of conns) {
        try {
          c.close();
        } catch {
          // Closed already.
        }
      }
      await b.stop();
    }
  },
);
