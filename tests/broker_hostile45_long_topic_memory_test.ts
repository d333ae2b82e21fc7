/**
 * hostile review 45b K-B7: a native publisher's last topic is kept with its
 * connection (wire/topic_cache.ts TopicCache: the topic's bytes and its
 * string, so a run of publishes on one topic makes one string), read from
 * the frame before the topic is checked, so a topic the broker refuses
 * (over 1,024 characters: BAD_REQUEST) stays cached at any length up to
 * --max-frame, counted nowhere. native_topic_mem.ts 200 connections, one
 * refused publish of a 900,000-character topic each: heap 13 → 186 MiB and
 * RSS 74 → 426 MiB after full collections while they stay connected,
 * counted 0 (back to 14 MiB once they close). 10,000 connections: ~19 GB.
 */
import assert from "node:assert/strict";
import { BrokerClient } from "./helpers/broker.ts";
import { memoryMark } from "./helpers/hostile45.ts";
import { mqttOpts, withMqttBroker } from "./helpers/mqtt.ts";

const MIB = 1024 * 1024;
const CONNECTIONS = 60;
const LENGTH = 500_000;

Deno.test(
  `broker: ${CONNECTIONS} native publishers of a refused ${LENGTH}-character topic hold nothing uncounted`,
  mqttOpts,
  () =>
    withMqttBroker(async (b) => {
      const counted = async () => ((await b.stats()).memory as Record<string, number>).bytes;
      const since = await memoryMark(counted);
      const clients: BrokerClient[] = [];
      let refused = 0;
      for (let k = 0; k < CONNECTIONS; k++) {
        const c = await BrokerClient.connect(b.port, "json", `long-${k}`);
        // A fresh string each time: the test keeps none of them.
        await c.confirm(`/t${k}/`.padEnd(LENGTH, "x"), 1).catch(() => refused++);
        clients.push(c);
      }
      const { heap, count, say: grown } = await since();
      const say = `${refused} of ${CONNECTIONS} refused; ${grown}`;
      for (const c of clients) c.close();
      assert.equal(refused, CONNECTIONS, say);
      // main: live heap +30.3 MiB, counted +0.00 MiB.
      assert.ok(heap <= 1.5 * count + 8 * MIB, say);
    }),
);
