/**
 * hostile review 44b H-B6: one copy per session (one_copy.ts) makes most of
 * a QoS 1 publish's targets skips — every subscription of a session but
 * its carrier — and a skip goes the whole delivery path (Subscription.deliver,
 * #lossy, #enqueue, Sink.encode, one_copy's byOf twice) to be told "not to
 * go", about 1–2 µs, while the fan-out counts it as a look only
 * (fanout.ts: a drop at once gives its delivery back, VISITS_PER_TURN =
 * 131,072 looks a turn). A publish to a topic that 1,000 away sessions of
 * 100 overlapping filters each reach (100,000 targets, 1,000 copies) holds
 * the event loop ~150–300 ms a turn: every other client's PINGRESP p50 284
 * ms (skip_stall.py 1000 100 40 10, load 13), against 8 ms before one copy
 * (ab69b23~1: 100,000 real deliveries, 8,192 a turn). Issue 17: fan-out
 * work bounded per turn of the event loop.
 */
import assert from "node:assert/strict";
import { startDist } from "./helpers/dist.ts";
import { mqttOpts } from "./helpers/mqtt.ts";
import { packet, str } from "./helpers/mqtt_bytes.ts";
import { awaySessions, dialMqtt, pinger } from "./helpers/mqtt_pinger.ts";
import { waitFor, writeAll } from "./helpers/raw.ts";

const MQTT_LINE = /MQTT on [\d.]+:(\d+)/;
const SESSIONS = 1000;
const FILTERS = 100;
const PUBLISHES = 40;
const SEGMENTS = ["k", "b", "c", "d", "e", "f", "g"];

Deno.test(
  `mqtt one copy: QoS 1 publishes to ${SESSIONS} away sessions of ${FILTERS} overlapping filters keep other clients' PINGRESP within a turn's bound`,
  mqttOpts,
  async () => {
    const broker = await startDist(["broker", "--port", "0", "--mqtt-port", "0"]);
    try {
      await waitFor(() => MQTT_LINE.test(broker.stderr()), 5000, "the MQTT line");
      const port = Number(broker.stderr().match(MQTT_LINE)![1]);
      // 100 distinct filters matching k/b/c/d/e/f/g: some levels replaced by +.
      const filters = Array.from(
        { length: FILTERS },
        (_, mask) => SEGMENTS.map((s, k) => (mask >> k) & 1 ? "+" : s).join("/"),
      );
      await awaySessions(port, "away", SESSIONS, filters);
      const pings = await pinger(port);
      const pub = await dialMqtt(port, "pub");
      const topic = SEGMENTS.join("/");
      // 10 in flight, 40 in all: each PUBACK (4 bytes) lets one more go.
      let acked = 0;
      const acks = (async () => {
        const buf = new Uint8Array(1024);
        while (acked < 4 * PUBLISHES) {
          const n = await pub.read(buf);
          if (n === null) return;
          acked += n;
        }
      })();
      for (let i = 0; i < PUBLISHES; i++) {
        await waitFor(() => acked >= 4 * (i - 9), 60_000, `PUBACK ${i - 9}`);
        await writeAll(pub, packet(0x32, [...str(topic), 0, i + 1, 0x78]));
      }
      await acks;
      pub.close();
      const { p50, say } = await pings.stop();
      console.log(say);
      // main: p50 150–284 ms; before one copy 8–13 ms (each turn ~10 ms of deliveries).
      assert.ok(p50 <= 60, say);
    } finally {
      await broker.stop();
    }
  },
);
