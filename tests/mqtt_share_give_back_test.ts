/**
 * hostile review 46b M-B3: a QoS 1 delivery in flight to a clean-session
 * member of a `$share` group that left without PUBACK was lost, neither
 * given to another member nor counted. MQTT 5 §4.8.2 has the server send
 * it to another member once the first's session ends (EMQX redispatches
 * it so): here the other member gets it, with the publisher's properties;
 * with no other member it is counted dropped (`sys.stats` `dropped`, the
 * `dist_broker_dropped_total` metric).
 */
import assert from "node:assert/strict";
import { drainAcking, mqttOpts as opts, RawMqtt, withMqttBroker } from "./helpers/mqtt.ts";
import { waitFor } from "./helpers/raw.ts";
import * as share from "./helpers/share_members.ts";

{
  const version = 5; // (shared subscriptions are MQTT 5's)
  Deno.test(
    `mqtt ${version}: what a shared subscription's member left unacknowledged goes to another member`,
    opts,
    () =>
      withMqttBroker(async (b) => {
        // A window of 2: the rest go to the other member.
        const quitter = await share.member(b.mqttPort, "quitter", {
          version,
          receiveMaximum: 2,
        });
        const stayer = await share.member(b.mqttPort, "stayer");
        const pub = await RawMqtt.connect(b.mqttPort, { clientId: "pub" }, 5);
        try {
          const n = 20;
          await share.publishNumbered(pub, 0, n, (i) => ({ userProperties: { k: `v${i}` } }));
          await waitFor(
            () => share.publishes(quitter).length + share.publishes(stayer).length >= n,
            5000,
            `${n} deliveries to the group`,
          );
          const held = share.publishes(quitter).map((p) => String(p.payload));
          assert.ok(held.length > 0, "the quitter was given some");
          await quitter.end(); // no PUBACK for any
          await waitFor(
            () => new Set(share.publishes(stayer).map((p) => String(p.payload))).size === n,
            5000,
            `the stayer to have all ${n}: it has ${
              share.publishes(stayer).length
            }, the quitter held ${held.join(",")}`,
          );
          // Given back as they went: the publisher's User Property with each.
          for (const p of share.publishes(stayer)) {
            const k = String(p.payload).slice(1);
            assert.deepEqual(
              { ...p.properties?.userProperties },
              { k: `v${k}` },
              String(p.payload),
            );
          }
          const stats = await b.stats();
          const groups = stats.queue_groups as Record<string, number>;
          assert.equal(groups.given_back, held.length, "counted as given back");
          assert.equal(stats.dropped, 0, "none dropped");
        } finally {
          await quitter.end();
          await stayer.end();
          await pub.end();
        }
      }),
  );
}

Deno.test(
  "mqtt: what a shared subscription's member had queued behind its window goes to another member too",
  opts,
  () =>
    withMqttBroker(async (b) => {
      // Both windows of 2 fill: the rest queue in the members (the least behind takes each).
      const quitter = await share.member(b.mqttPort, "quitter", { receiveMaximum: 2 });
      const stayer = await share.member(b.mqttPort, "stayer", { receiveMaximum: 2 });
      const pub = await RawMqtt.connect(b.mqttPort, { clientId: "pub" }, 5);
      try {
        const n = 12;
        await share.publishNumbered(pub, 0, n);
        await share.pubacks(pub, n);
        await share.windowFull(quitter, 2, "the quitter's full window");
        await quitter.end();
        // The stayer acknowledges what comes: it gets all, its own queue and the quitter's.
        const got = new Set(await drainAcking(stayer, 500));
        assert.equal(got.size, n, `the stayer got ${[...got].sort().join(",")}`);
        const stats = await b.stats();
        assert.ok(
          (stats.queue_groups as Record<string, number>).given_back > 2,
          "queued given back",
        );
        assert.equal(stats.dropped, 0, "none dropped");
      } finally {
        await quitter.end();
        await stayer.end();
        await pub.end();
      }
    }),
);

Deno.test(
  "mqtt: a persistent member's session that expires gives what it held and what waited for it to another member",
  opts,
  () =>
    withMqttBroker(async (b) => {
      // Kept 1 s after it goes.
      const away = await share.member(b.mqttPort, "away", {
        receiveMaximum: 2,
        sessionExpiryInterval: 1,
      });
      const stayer = await share.member(b.mqttPort, "stayer");
      const pub = await RawMqtt.connect(b.mqttPort, { clientId: "pub" }, 5);
      try {
        await share.publishNumbered(pub, 0, 10);
        await share.windowFull(away, 2, "the away member's full window");
        await away.end(); // its session waits a second for it, then expires
        await share.publishNumbered(pub, 10, 20);
        const got = new Set(await drainAcking(stayer, 2500));
        assert.equal(got.size, 20, `the stayer got ${[...got].sort().join(",")}`);
        const stats = await b.stats();
        assert.ok((stats.queue_groups as Record<string, number>).given_back >= 2, "given back");
        assert.equal(stats.dropped, 0, "none dropped");
      } finally {
        await away.end();
        await stayer.end();
        await pub.end();
      }
    }),
);

Deno.test(
  "mqtt: what a shared subscription's last member left unacknowledged is counted dropped",
  opts,
  () =>
    withMqttBroker(async (b) => {
      const alone = await share.member(b.mqttPort, "alone", { receiveMaximum: 3 });
      const pub = await RawMqtt.connect(b.mqttPort, { clientId: "pub" }, 5);
      try {
        const n = 10;
        await share.publishNumbered(pub, 0, n);
        await share.windowFull(alone, 3, "a full window");
        await share.pubacks(pub, n);
        await alone.end();
        // Three in flight, seven queued behind the window: all ten the group's loss, counted.
        let dropped = 0;
        for (let i = 0; i < 100 && dropped !== n; i++) {
          await new Promise((r) => setTimeout(r, 50));
          dropped = (await b.stats()).dropped as number;
        }
        assert.equal(dropped, n, "counted dropped");
      } finally {
        await alone.end();
        await pub.end();
      }
    }),
);
