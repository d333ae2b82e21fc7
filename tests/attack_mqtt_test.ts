/**
 * The MQTT ports against a hostile client: a will on a topic its user may
 * not publish (the broker published it for the user when it vanished: a
 * user allowed to publish nothing wrote a retained value anywhere), and a
 * flood of the WebSocket port past the file limit (Deno's HTTP server
 * failed, and its unhandled failure ended the broker).
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { hashToken } from "../auth/mod.ts";
import { parseAddress } from "../config/mod.ts";
import { dial } from "../wire/mod.ts";
import { startDist } from "./helpers/dist.ts";
import { RawMqtt } from "./helpers/mqtt.ts";
import { closeQuietly, sleep, waitFor } from "./helpers/raw.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };

const ADMIN = "admin-token-0123456789";
const READER = "reader-token-0123456789";

const USERS = `
[users.admin]
token = "${hashToken(ADMIN)}"
publish = ["/"]
subscribe = ["/"]

[users.reader]
token = "${hashToken(READER)}"
subscribe = ["/news"]
`;

Deno.test({
  name: "attack: a will on a topic the user may not publish is refused at CONNECT, never sent",
  ...opts,
  async fn() {
    const file = await Deno.makeTempFile({ suffix: ".toml" });
    await Deno.writeTextFile(file, USERS);
    const broker = await startDist(["broker", "--port", "0", "--mqtt-port", "0", "--users", file]);
    const open: RawMqtt[] = [];
    try {
      await waitFor(() => /MQTT on [\d.]+:\d+/.test(broker.stderr()), 5000, "the MQTT line");
      const mqttPort = Number(broker.stderr().match(/MQTT on [\d.]+:(\d+)/)![1]);
      for (const [version, code] of [[4, "returnCode"], [5, "reasonCode"]] as const) {
        const evil = await RawMqtt.open(mqttPort, version);
        open.push(evil);
        await evil.send({
          cmd: "connect",
          protocolId: "MQTT",
          protocolVersion: version,
          clientId: `evil${version}`,
          clean: true,
          keepalive: 0,
          username: "token",
          password: Buffer.from(READER),
          will: {
            topic: "secret/forged",
            payload: Buffer.from("pwned"),
            qos: 1,
            retain: true,
          },
        } as never, version);
        const ack = await evil.next("connack") as unknown as Record<string, number>;
        // Not authorized: 3.1.1's 5, MQTT 5's 0x87.
        assert.equal(ack[code], version === 5 ? 0x87 : 5);
        await evil.closedWithin();
      }
      await sleep(200);
      const admin = await dial(parseAddress(broker.address), {
        role: "client",
        name: "admin",
        credentials: { token: ADMIN },
      });
      try {
        const { topics } = await admin.call("broker.topics") as { topics: { topic: string }[] };
        assert.deepEqual(topics.filter((t) => t.topic.startsWith("/secret")), []);
      } finally {
        admin.close();
      }
    } finally {
      for (const r of open) await r.end();
      await broker.stop();
      await Deno.remove(file);
    }
  },
});

Deno.test({
  name: "attack: a flood on --mqtt-ws-port past the file limit leaves the broker alive",
  ...opts,
  async fn() {
    const broker = await startDist(["broker", "--port", "0", "--mqtt-ws-port", "0"]);
    const held: Deno.Conn[] = [];
    try {
      const line = /MQTT over WebSocket on [\d.]+:(\d+)/;
      await waitFor(() => line.test(broker.stderr()), 5000, "the WebSocket line");
      const port = Number(broker.stderr().match(line)![1]);
      const pid = broker.child.pid;
      const limit = [...Deno.readDirSync(`/proc/${pid}/fd`)].length + 24;
      const out = await new Deno.Command("prlimit", {
        args: [`--pid=${pid}`, `--nofile=${limit}:${limit}`],
      }).output();
      assert.equal(out.code, 0);
      for (let i = 0; i < 72; i++) {
        try {
          const c = await Deno.connect({ hostname: "127.0.0.1", port });
          held.push(c);
          await c.write(Uint8Array.of(0x47)).catch(() => {});
        } catch {
          break;
        }
      }
      await sleep(300);
      for (const c of held.splice(0)) closeQuietly(c);
      let status = 0;
      const end = performance.now() + 8000;
      while (status !== 426 && performance.now() < end) {
        status = await fetch(`http://127.0.0.1:${port}/mqtt`).then(async (r) => {
          await r.body?.cancel();
          return r.status;
        }, () => 0);
        if (status !== 426) await sleep(100);
      }
      assert.equal(status, 426, `the WebSocket port does not serve again:\n${broker.stderr()}`);
      assert.match(broker.stderr(), /server stopped \(.*Too many open files/);
    } finally {
      for (const c of held) closeQuietly(c);
      await broker.stop();
    }
  },
});

Deno.test({
  name: "attack: another user's client id is refused at CONNECT; its session and connection go on",
  ...opts,
  async fn() {
    const file = await Deno.makeTempFile({ suffix: ".toml" });
    await Deno.writeTextFile(file, USERS);
    const broker = await startDist(["broker", "--port", "0", "--mqtt-port", "0", "--users", file]);
    const open: RawMqtt[] = [];
    const connect = async (token: string, version: 4 | 5, clientId: string) => {
      const c = await RawMqtt.open(mqttPort, version);
      open.push(c);
      await c.send({
        cmd: "connect",
        protocolId: "MQTT",
        protocolVersion: version,
        clientId,
        clean: false,
        keepalive: 0,
        username: "token",
        password: Buffer.from(token),
        ...(version === 5 ? { properties: { sessionExpiryInterval: 600 } } : {}),
      } as never, version);
      return { c, ack: await c.next("connack") as unknown as Record<string, number> };
    };
    let mqttPort = 0;
    try {
      await waitFor(() => /MQTT on [\d.]+:\d+/.test(broker.stderr()), 5000, "the MQTT line");
      mqttPort = Number(broker.stderr().match(/MQTT on [\d.]+:(\d+)/)![1]);
      for (
        const [version, code, refused] of [[4, "returnCode", 5], [5, "reasonCode", 0x85]] as const
      ) {
        const id = `reader-session-${version}`;
        const reader = await connect(READER, version, id);
        assert.equal(reader.ack[code], 0);
        await reader.c.send(
          { cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "news", qos: 1 }] } as never,
          version,
        );
        await reader.c.next("suback");
        // Another user with the same client id: refused, nothing of the reader's touched.
        const evil = await connect(ADMIN, version, id);
        assert.equal(evil.ack[code], refused);
        await evil.c.closedWithin();
        // The reader's connection is still open and its subscription still delivers.
        const admin = await connect(ADMIN, version, `admin-${version}`);
        assert.equal(admin.ack[code], 0);
        await admin.c.send(
          {
            cmd: "publish",
            topic: "news",
            payload: Buffer.from("still here"),
            qos: 0,
            retain: false,
          } as never,
          version,
        );
        const got = await reader.c.next("publish") as unknown as { payload: Uint8Array };
        assert.equal(new TextDecoder().decode(got.payload), "still here");
        // The same user takes its own session over as the spec says: resumed, Session Present.
        const again = await connect(READER, version, id);
        assert.equal(again.ack[code], 0);
        assert.equal((again.ack as Record<string, unknown>).sessionPresent, true);
        await reader.c.closedWithin();
      }
    } finally {
      for (const c of open) c.close();
      await broker.stop();
      await Deno.remove(file);
    }
  },
});
