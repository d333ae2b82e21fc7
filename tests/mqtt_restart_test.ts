/**
 * MQTT persistent sessions across a broker restart (`--data-dir`): a client
 * away when the broker is killed (SIGKILL) or stopped finds its session
 * after the restart (Session Present), with its subscriptions, which took
 * what was published meanwhile; a clean session leaves nothing behind.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { startDist } from "./helpers/dist.ts";
import type { IPublishPacket } from "mqtt-packet";
import { atLeast, connectWithAck, mqttClient, mqttOpts as opts, RawMqtt } from "./helpers/mqtt.ts";
import { sleep } from "./helpers/raw.ts";
import { BrokerClient } from "./helpers/broker.ts";

/** Waits (at most 5 s) for an asynchronous condition. */
async function waitUntil(cond: () => Promise<boolean>): Promise<void> {
  for (const end = Date.now() + 5000; !await cond();) {
    if (Date.now() > end) throw new Error("Timed out");
    await sleep(20);
  }
}

const text = (b: Uint8Array) => new TextDecoder().decode(b);

async function broker(dir: string, ...extra: string[]) {
  const b = await startDist([
    "broker",
    ...["--port", "0", "--mqtt-port", "0", "--data-dir", dir, ...extra],
  ]);
  const m = b.stderr().match(/MQTT on 127\.0\.0\.1:(\d+)/);
  assert.ok(m, b.stderr());
  return { b, port: Number(m[1]) };
}

Deno.test({
  name:
    "mqtt restart: persistent sessions come back with their subscriptions after SIGKILL and after a stop",
  ...opts,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "mqtt-restart-" });
    let { b, port } = await broker(dir);
    try {
      // 3.1.1 clean session 0, MQTT 5 with a Session Expiry, and a clean one.
      const v4 = await connectWithAck(port, { clientId: "keep4", clean: false });
      await v4.c.subscribeAsync("rs/#", { qos: 1 });
      const v5 = await connectWithAck(port, {
        clientId: "keep5",
        clean: false,
        protocolVersion: 5,
        properties: { sessionExpiryInterval: 300 },
      });
      await v5.c.subscribeAsync("rs/+", { qos: 1, properties: { subscriptionIdentifier: 9 } });
      const clean = await connectWithAck(port, { clientId: "gone", clean: true });
      await clean.c.subscribeAsync("rs/#", { qos: 1 });
      for (const c of [v4.c, v5.c, clean.c]) await c.endAsync();
      await sleep(200); // the rows' group commit
      for (const stop of ["SIGKILL", "SIGTERM"] as const) {
        await b.stop(stop);
        ({ b, port } = await broker(dir));
        assert.match(b.stderr(), /Read 2 MQTT session\(s\) back/);
        // Published while both are away: their restored subscriptions take it.
        const pub = await mqttClient(port);
        await pub.publishAsync("rs/x", stop, { qos: 1 });
        await pub.endAsync();
        const a = await connectWithAck(port, { clientId: "keep4", clean: false });
        const c = await connectWithAck(port, {
          clientId: "keep5",
          clean: false,
          protocolVersion: 5,
          properties: { sessionExpiryInterval: 300 },
        });
        const g = await connectWithAck(port, { clientId: "gone", clean: false });
        assert.equal(a.ack.sessionPresent, true);
        assert.equal(c.ack.sessionPresent, true);
        assert.equal(g.ack.sessionPresent, false);
        await atLeast(a.got, 1);
        await atLeast(c.got, 1);
        assert.deepEqual(a.got.map((m) => [m.topic, text(m.payload)]), [["rs/x", stop]]);
        assert.deepEqual(c.got.map((m) => [m.topic, text(m.payload)]), [["rs/x", stop]]);
        // "gone" asked for a session just now: it ends again when it goes (clean start next).
        await g.c.endAsync();
        const bye = await connectWithAck(port, { clientId: "gone", clean: true });
        await bye.c.endAsync();
        for (const x of [a.c, c.c]) await x.endAsync();
        await sleep(200);
      }
    } finally {
      await b.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

/** A broker whose every store write is on disk before the publish that made it is acknowledged. */
const synced = (dir: string, ...extra: string[]) =>
  broker(dir, "--fsync", "always", ...extra).then((x) => ({ ...x, dir }));

Deno.test({
  name:
    "mqtt restart: deliveries queued for an away session and those in flight survive SIGKILL, in order",
  ...opts,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "mqtt-queued-" });
    let { b, port } = await synced(dir);
    try {
      // Away: a 3.1.1 session; connected and not acknowledging: an MQTT 5 one (raw socket).
      const away = await connectWithAck(port, { clientId: "q-away", clean: false });
      await away.c.subscribeAsync("rq/#", { qos: 1 });
      await away.c.endAsync();
      const raw = await RawMqtt.connect(port, {
        clientId: "q-inflight",
        clean: false,
        protocolVersion: 5,
        properties: { sessionExpiryInterval: 300 },
      }, 5);
      await raw.send(
        { cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "rq/#", qos: 1 }] },
        5,
      );
      await raw.next("suback");
      const pub = await mqttClient(port);
      for (let i = 1; i <= 5; i++) await pub.publishAsync(`rq/${i}`, `m${i}`, { qos: 1 });
      await pub.endAsync();
      // The raw client has them, unacknowledged: in flight.
      for (let i = 1; i <= 5; i++) await raw.next("publish");
      await b.stop("SIGKILL");
      raw.close();
      ({ b, port } = await synced(dir));
      assert.match(b.stderr(), /Read 2 MQTT session\(s\) back with 10 message\(s\)/);
      const back = await connectWithAck(port, { clientId: "q-away", clean: false });
      assert.equal(back.ack.sessionPresent, true);
      await atLeast(back.got, 5);
      assert.deepEqual(
        back.got.map((m) => [m.topic, text(m.payload), m.qos]),
        [1, 2, 3, 4, 5].map((i) => [`rq/${i}`, `m${i}`, 1]),
      );
      const again = await RawMqtt.connect(port, {
        clientId: "q-inflight",
        clean: false,
        protocolVersion: 5,
        properties: { sessionExpiryInterval: 300 },
      }, 5);
      const resent: [string, string, boolean][] = [];
      for (let i = 1; i <= 5; i++) {
        const p = await again.next("publish") as IPublishPacket;
        resent.push([p.topic, text(p.payload as Uint8Array), p.dup]);
        await again.send({ cmd: "puback", messageId: p.messageId! }, 5);
      }
      assert.deepEqual(resent, [1, 2, 3, 4, 5].map((i) => [`rq/${i}`, `m${i}`, true]));
      await back.c.endAsync();
      await again.send({ cmd: "disconnect" }, 5);
      await again.end();
      // Both connections closed by the broker: their acknowledgements before were handled.
      const native = await BrokerClient.connect(b.port);
      try {
        await waitUntil(async () =>
          ((await native.stats()).mqtt as { connections: number }).connections === 0
        );
      } finally {
        native.close();
      }
      // Delivered and acknowledged: nothing is left for a third start.
      await b.stop("SIGKILL");
      ({ b, port } = await synced(dir));
      assert.match(b.stderr(), /back with 0 message\(s\)/);
    } finally {
      await b.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "mqtt restart: the bound of an away session's queue holds across a restart, drops counted",
  ...opts,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "mqtt-bound-" });
    // 4 KiB of pending deliveries per session: about 20 of these.
    let { b, port } = await synced(dir, "--max-pending", "4096");
    try {
      const away = await connectWithAck(port, { clientId: "b-away", clean: false });
      await away.c.subscribeAsync("rb/t", { qos: 1 });
      await away.c.endAsync();
      const pub = await mqttClient(port);
      const body = "x".repeat(180);
      for (let i = 0; i < 40; i++) await pub.publishAsync("rb/t", `${i} ${body}`, { qos: 1 });
      await pub.endAsync();
      const native = await BrokerClient.connect(b.port);
      const { session_dropped: dropped } = (await native.stats()).mqtt as Record<string, number>;
      native.close();
      await b.stop("SIGKILL");
      ({ b, port } = await synced(dir, "--max-pending", "4096"));
      const kept = Number(b.stderr().match(/back with (\d+) message/)![1]);
      // What the bound kept, and nothing it had dropped (counted) came back.
      assert.ok(dropped > 0, "the bound dropped some");
      assert.equal(kept, 40 - dropped);
      const back = await connectWithAck(port, { clientId: "b-away", clean: false });
      await atLeast(back.got, kept);
      // The newest, in order: the oldest went past the bound (drop-oldest), before the restart.
      const got = back.got.map((m) => Number(text(m.payload).split(" ")[0]));
      assert.deepEqual(got, Array.from({ length: kept }, (_, i) => 40 - kept + i));
      await back.c.endAsync();
    } finally {
      await b.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "mqtt restart: a session connected when the broker is killed counts as away since then, not since the restart",
  ...opts,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "mqtt-clock-" });
    let { b, port } = await synced(dir);
    try {
      const v5 = {
        clean: false,
        protocolVersion: 5 as const,
        properties: { sessionExpiryInterval: 1 },
      };
      const short = await connectWithAck(port, { clientId: "c-short", ...v5 });
      await short.c.subscribeAsync("rc/#", { qos: 1 });
      const long = await connectWithAck(port, {
        clientId: "c-long",
        ...v5,
        properties: { sessionExpiryInterval: 300 },
      });
      await long.c.subscribeAsync("rc/#", { qos: 1 });
      await b.stop("SIGKILL");
      const killed = Date.now();
      short.c.end(true);
      long.c.end(true);
      // Past the 1 s expiry since the kill (the restart itself may take less).
      await sleep(Math.max(0, killed + 1500 - Date.now()));
      ({ b, port } = await synced(dir));
      const a = await connectWithAck(port, { clientId: "c-short", ...v5 });
      const c = await connectWithAck(port, {
        clientId: "c-long",
        ...v5,
        properties: { sessionExpiryInterval: 300 },
      });
      assert.equal(a.ack.sessionPresent, false, "expired while the broker was down");
      assert.equal(c.ack.sessionPresent, true);
      await a.c.endAsync();
      await c.c.endAsync();
    } finally {
      await b.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "mqtt restart: values retained over MQTT come back as they were published, to MQTT and native subscribers (hostile review 36 J10)",
  ...opts,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "mqtt-retained-" });
    let { b, port } = await broker(dir);
    try {
      const pub = await mqttClient(port, { protocolVersion: 5 });
      await pub.publishAsync("rt/a", "hello", { qos: 1, retain: true });
      await pub.publishAsync("rt/b", '{"a":1}', { qos: 1, retain: true });
      await pub.publishAsync("rt/c", Buffer.from([0xff, 0, 1]), { qos: 1, retain: true });
      await pub.publishAsync("rt/d", "typed", {
        qos: 1,
        retain: true,
        properties: { contentType: "text/plain", userProperties: { k: "v" } },
      });
      await pub.endAsync();
      await sleep(200); // the rows' group commit
      await b.stop("SIGTERM");
      ({ b, port } = await broker(dir));
      const sub = await mqttClient(port, { protocolVersion: 5 });
      const got: IPublishPacket[] = [];
      sub.on("message", (_t, _p, packet) => got.push(packet));
      await sub.subscribeAsync("rt/#", { qos: 1 });
      await atLeast(got, 4);
      const by = new Map(got.map((p) => [p.topic, p]));
      assert.equal(text(by.get("rt/a")!.payload as Uint8Array), "hello");
      assert.equal(text(by.get("rt/b")!.payload as Uint8Array), '{"a":1}');
      assert.deepEqual([...(by.get("rt/c")!.payload as Uint8Array)], [0xff, 0, 1]);
      assert.equal(text(by.get("rt/d")!.payload as Uint8Array), "typed");
      assert.equal(by.get("rt/d")!.properties?.contentType, "text/plain");
      assert.ok(got.every((p) => p.retain), "delivered as retained");
      await sub.endAsync();
      const native = await BrokerClient.connect(b.port);
      try {
        await native.subscribe("/rt");
        const values = new Map((await native.received(4)).map((d) => [d.topic, d.value]));
        assert.equal(values.get("/rt/a"), "hello");
        assert.deepEqual(values.get("/rt/b"), { a: 1 });
        assert.equal(values.get("/rt/d"), "typed");
      } finally {
        native.close();
      }
    } finally {
      await b.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
