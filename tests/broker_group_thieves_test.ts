/**
 * Queue groups judge a member by what its peer takes, not by the room in
 * its socket (hostile review 36 J3): connections that subscribe to a group
 * and never read took 97.6 % of its messages, 40 of them each absorbing a
 * few MB in the kernel's buffers before counting as behind, and the broker
 * reported nothing. Now a member whose socket holds more than 64 KiB its
 * peer has not acknowledged ranks after every member that drains, so the
 * readers get the large majority, still evenly among themselves, and
 * `sys.stats` counts the stalled members (`queue_groups`).
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import mqttPacket, { type Packet } from "mqtt-packet";
import { BrokerClient, rawSubscriber, statsUntil, withBroker } from "./helpers/broker.ts";
import { mqttClient, mqttOpts, withMqttBroker } from "./helpers/mqtt.ts";
import { closeQuietly, waitFor, writeAll } from "./helpers/raw.ts";
import { countFrames, publishKb } from "./helpers/groups.ts";

/** `k` connections, each a member of group g on /q with drop-oldest, that never read. */
function thieves(port: number, k: number) {
  return Promise.all(
    Array.from(
      { length: k },
      () => rawSubscriber(port, { topic: "/q", group: "g", policy: "drop-oldest" }),
    ),
  );
}

Deno.test("broker queue group: ten connections that never read cannot take most of its messages (hostile review 36 J3)", async () => {
  await withBroker(async (b) => {
    const pub = await BrokerClient.connect(b.port);
    const alice = await rawSubscriber(b.port, { topic: "/q", group: "g" });
    const got = countFrames(alice.conn);
    const mallory = await thieves(b.port, 10);
    try {
      const n = 40_000;
      await publishKb(pub, n);
      // Before: each thief's socket took ~4 MB before it counted as behind; alice ~10 %.
      // Alone here alice gets ~90 %; under CI's load (15 on 2 cores) 78 % was seen: most, not all.
      await waitFor(() => got.count >= 0.6 * n, 20_000, `alice's deliveries (${got.count})`);
      const stats = await statsUntil(pub, (s) => s.queued_bytes === 0, 5000);
      assert.equal(stats.dropped, 0);
      const groups = stats.queue_groups as Record<string, number>;
      // Passed over: before stop 48 once their sockets stalled (4–10 of 10 were when the stats
      // were read); now once they leave the broker's request unanswered 25 ms (group_proof.ts
      // awaited), before their sockets fill.
      assert.ok(groups.passed_over > 0, JSON.stringify(groups));
    } finally {
      for (const m of mallory) closeQuietly(m.conn);
      closeQuietly(alice.conn);
      await got.done;
      pub.close();
    }
  });
});

Deno.test("broker queue group: readers beside members that never read get most, evenly", async () => {
  await withBroker(async (b) => {
    const pub = await BrokerClient.connect(b.port);
    const readers = await Promise.all(
      [0, 1, 2].map(() => rawSubscriber(b.port, { topic: "/q", group: "g" })),
    );
    const mallory = await thieves(b.port, 10);
    const counts = readers.map((r) => countFrames(r.conn));
    try {
      const n = 30_000;
      await publishKb(pub, n);
      const total = () => counts.reduce((s, c) => s + c.count, 0);
      await waitFor(() => total() >= 0.6 * n, 20_000, `the readers' deliveries (${total()})`);
      const mean = total() / counts.length;
      for (const c of counts) {
        assert.ok(
          c.count > 0.6 * mean && c.count < 1.4 * mean,
          `shares ${counts.map((x) => x.count)}`,
        );
      }
    } finally {
      for (const m of mallory) closeQuietly(m.conn);
      for (const r of readers) closeQuietly(r.conn);
      await Promise.all(counts.map((c) => c.done));
      pub.close();
    }
  });
});

Deno.test("broker queue group: members that all read share evenly from the start, nothing lost", async () => {
  await withBroker(async (b) => {
    const pub = await BrokerClient.connect(b.port);
    // Sixteen join at once: four times what the trial budget (1 MiB) covered of 256 KiB trials.
    const readers = await Promise.all(
      Array.from({ length: 16 }, () => rawSubscriber(b.port, { topic: "/q", group: "g" })),
    );
    // Each reads and answers the broker's requests, as a dist client does.
    const counts = readers.map((r) => countFrames(r.conn));
    try {
      const n = 48_000;
      await publishKb(pub, n);
      const total = () => counts.reduce((s, c) => s + c.count, 0);
      await waitFor(() => total() === n, 20_000, `the readers' deliveries (${total()})`);
      // Before: members joining at once were on trial until their kernel had acknowledged 256 KiB,
      // and the group's trial budget (1 MiB) was about four of those: of four, the two past it
      // first took 81 % (1876, 1876, 8124, 8124). Now each is proven by its answer within 64 KiB,
      // and gives back what its trial cost.
      const even = n / counts.length;
      for (const c of counts) {
        assert.ok(c.count > 0.7 * even && c.count < 1.3 * even, `${counts.map((x) => x.count)}`);
      }
      const stats = await pub.stats();
      assert.equal((stats.queue_groups as Record<string, number>).stalled_sockets, 0);
    } finally {
      for (const r of readers) closeQuietly(r.conn);
      await Promise.all(counts.map((c) => c.done));
      pub.close();
    }
  });
});

/** An MQTT 5 client that subscribes to `filter` (QoS 0), then never reads. */
async function mqttThief(port: number, filter: string): Promise<Deno.Conn> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const packet = (p: unknown) =>
    new Uint8Array(mqttPacket.generate(p as Packet, { protocolVersion: 5 }));
  const parser = mqttPacket.parser({ protocolVersion: 5 });
  const seen: string[] = [];
  parser.on("packet", (p: Packet) => seen.push(p.cmd));
  const until = async (cmd: string) => {
    const buf = new Uint8Array(256);
    while (!seen.includes(cmd)) {
      const n = await conn.read(buf);
      if (n === null) throw new Error("closed");
      parser.parse(Buffer.from(buf.subarray(0, n)));
    }
  };
  const clientId = `thief-${crypto.randomUUID().slice(0, 8)}`;
  await writeAll(
    conn,
    packet({ cmd: "connect", protocolId: "MQTT", protocolVersion: 5, clientId, clean: true }),
  );
  await until("connack");
  await writeAll(
    conn,
    packet({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: filter, qos: 0 }] }),
  );
  await until("suback"); // then nothing more is read
  return conn;
}

Deno.test(
  "MQTT shared subscription: ten members that never read cannot take most of its messages",
  mqttOpts,
  async () => {
    await withMqttBroker(async (b) => {
      const alice = await mqttClient(b.mqttPort, { protocolVersion: 5 });
      let got = 0;
      alice.on("message", () => got++);
      const mallory: Deno.Conn[] = [];
      try {
        await alice.subscribeAsync("$share/g/q/#", { qos: 0 });
        for (let i = 0; i < 10; i++) mallory.push(await mqttThief(b.mqttPort, "$share/g/q/#"));
        const n = 30_000;
        await publishKb(b.native, n);
        // Before: the ten sockets took ~4 MB each before they counted as behind.
        await waitFor(() => got >= 0.6 * n, 30_000, `alice's deliveries (${got})`);
      } finally {
        for (const m of mallory) closeQuietly(m);
        await alice.endAsync(true);
      }
    });
  },
);
