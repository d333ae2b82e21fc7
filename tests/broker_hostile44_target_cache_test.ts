/**
 * hostile review 44b H-B3 and H-B4: what a topic keeps of the subscriptions
 * it reaches is counted nowhere.
 *
 * H-B3: every topic keeps the list of subscriptions it reaches (matching.ts:
 * Topic.cache, "cached on the topic until a subscription that may cover the
 * topic comes or goes"), a pointer per subscription per topic. Away MQTT
 * sessions on `#` cost a QoS 0 publish nothing else (parked: dropped
 * unmade), so any client makes the broker keep topics × sessions:
 * cache_flood.py 1000 sessions, 100,000 topics, `--max-memory 256 MiB`: RSS
 * 105 → 1,270 MiB, counted 10 → 75 MiB (Mosquitto 2: 9 MiB); with
 * `--max-topics 1000` (the topics and their lists forgotten) heap_used stays.
 *
 * H-B4: one copy per session (one_copy.ts) indexes each targets list by
 * session (`indexes`: a Map of arrays, per list) and keeps it as long as
 * the list is cached: about 250 bytes per topic and session holding two
 * matching filters. cache_flood2.py 200 sessions on `#` and `+/#`, QoS 1 to
 * 5,000 topics: heap_used 37 MiB before one copy (ab69b23~1), 274 MiB on
 * main, counted 64 → 39 MiB.
 *
 * Issue 17: RSS within 1.5× of the counted bytes, and `--max-memory` holds.
 */
import assert from "node:assert/strict";
import { startDist } from "./helpers/dist.ts";
import { BrokerClient } from "./helpers/broker.ts";
import { mqttOpts } from "./helpers/mqtt.ts";
import { packet, str } from "./helpers/mqtt_bytes.ts";
import { awaySessions, dialMqtt, pinger, readBytes } from "./helpers/mqtt_pinger.ts";
import { sleep, waitFor, writeAll } from "./helpers/raw.ts";

const MIB = 1024 * 1024;
const MQTT_LINE = /MQTT on [\d.]+:(\d+)/;
const MAX_MEMORY = 64 * MIB;

/**
 * A child broker under MAX_MEMORY: `sessions` 3.1.1 persistent sessions
 * subscribe `filters` (QoS 1) and go away; one client publishes `x` at
 * `qos` to t/0 … t/(topics-1). What heap_used, RSS and the counted bytes
 * grew by (stats' memory), and a line saying so.
 */
async function flood(sessions: number, filters: string[], topics: number, qos: 0 | 1) {
  const broker = await startDist(
    ["broker", "--port", "0", "--mqtt-port", "0", "--max-memory", String(MAX_MEMORY)],
  );
  try {
    await waitFor(() => MQTT_LINE.test(broker.stderr()), 5000, "the MQTT line");
    const port = Number(broker.stderr().match(MQTT_LINE)![1]);
    // A client of its own each time: the flood may hold the broker past a heartbeat's liveness.
    const memory = async () => {
      const native = await BrokerClient.connect(broker.port);
      try {
        return (await native.stats()).memory as Record<string, number>;
      } finally {
        native.close();
      }
    };
    await awaySessions(port, "away", sessions, filters);
    await sleep(500);
    const before = await memory();
    // Another client's PINGREQ every 10 ms meanwhile: its round trips.
    const pings = await pinger(port);
    const pub = await dialMqtt(port, "pub");
    const chunk: number[] = [];
    for (let i = 0; i < topics; i++) {
      const id = qos === 0 ? [] : [((i % 60_000) + 1) >> 8, ((i % 60_000) + 1) & 0xff];
      chunk.push(...packet(0x30 | (qos << 1), [...str(`t/${i}`), ...id, 0x78]));
      if (chunk.length > 32_768 || i === topics - 1) {
        await writeAll(pub, Uint8Array.from(chunk));
        chunk.length = 0;
      }
    }
    await writeAll(pub, packet(0xc0, [])); // PINGREQ: its PINGRESP comes after every PUBACK
    await readBytes(pub, (qos === 0 ? 0 : 4 * topics) + 2);
    pub.close();
    const { p50, say: pingSay } = await pings.stop();
    await sleep(2000);
    const after = await memory();
    const counted = Math.max(0, after.bytes - before.bytes);
    const heap = after.heap_used - before.heap_used;
    const rss = after.rss - before.rss;
    const say = `heap_used +${(heap / MIB).toFixed(0)} MiB, RSS +${(rss / MIB).toFixed(0)} MiB, ` +
      `counted +${(counted / MIB).toFixed(1)} MiB (budget ${MAX_MEMORY / MIB} MiB)`;
    console.log(say, "|", pingSay);
    return { heap, counted, say, p50, pingSay };
  } finally {
    await broker.stop();
  }
}

// The slack (64 MiB) is garbage a GC has not taken yet: with --max-topics 1000 the H-B3 flood
// leaves heap_used +8 to +45 MiB, counted 0. RSS is not asserted: it grows by the freed garbage
// glibc keeps (X8, known) whatever is counted.

Deno.test(
  "broker: 400 away sessions on # and QoS 0 publishes to 40,000 topics stay within --max-memory and 1.5x the counted bytes (H-B3)",
  mqttOpts,
  async () => {
    const { heap, counted, say } = await flood(400, ["#"], 40_000, 0);
    // main: heap_used +250–490 MiB, counted +26 MiB (300 x 30,000: +116–256 MiB for 19.5).
    assert.ok(heap <= 1.5 * counted + 64 * MIB, say);
    assert.ok(heap <= MAX_MEMORY + 64 * MIB, say);
  },
);

Deno.test(
  "broker: 200 away sessions on # and +/# and QoS 1 publishes to 5,000 topics stay within 1.5x the counted bytes (H-B4, one copy's index)",
  mqttOpts,
  async () => {
    const { heap, counted, say } = await flood(200, ["#", "+/#"], 5_000, 1);
    // main: heap_used about +250 MiB for +35 MiB counted (before one copy: +20 MiB for +60).
    assert.ok(heap <= 1.5 * counted + 64 * MIB, say);
  },
);

Deno.test(
  "broker: QoS 0 publishes to 20,000 new topics that 500 away sessions on # reach keep other clients' PINGRESP within a turn's bound (H-B8)",
  mqttOpts,
  async () => {
    const { p50, pingSay } = await flood(500, ["#"], 20_000, 0);
    // main: p50 1.75–1.9 s (each publish to a new topic collects and filters 500–1,000 targets,
    // none of it in a turn's bound); Mosquitto 2: 0.4 ms.
    assert.ok(p50 <= 200, pingSay);
  },
);
