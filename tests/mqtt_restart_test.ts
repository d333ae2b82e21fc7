/**
 * MQTT persistent sessions across a broker restart (`--data-dir`): a client
 * away when the broker is killed (SIGKILL) or stopped finds its session
 * after the restart (Session Present), with its subscriptions, which took
 * what was published meanwhile; a clean session leaves nothing behind.
 */
import assert from "node:assert/strict";
import { startDist } from "./helpers/dist.ts";
import { atLeast, connectWithAck, mqttClient, mqttOpts as opts } from "./helpers/mqtt.ts";
import { sleep } from "./helpers/raw.ts";

const text = (b: Uint8Array) => new TextDecoder().decode(b);

async function broker(dir: string) {
  const b = await startDist([
    "broker",
    ...["--port", "0", "--mqtt-port", "0", "--data-dir", dir],
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
