/**
 * The MQTT ports against a hostile client: a will on a topic its user may
 * not publish (the broker published it for the user when it vanished: a
 * user allowed to publish nothing wrote a retained value anywhere), and a
 * flood of the WebSocket port past the file limit (Deno's HTTP server
 * failed, and its unhandled failure ended the broker; then its restart
 * closed every WebSocket client), half-sent HTTP requests on the WebSocket
 * port (held forever, in no limit), and a client id whose session is
 * another user's, or nobody's (made while authentication was off), live or
 * read back after a restart.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import mqtt from "mqtt";
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

const MQTT_LINE = /MQTT on [\d.]+:(\d+)/;

/** A broker with the users file (and `extra` flags) and its MQTT port; `close` stops it. */
async function usersBroker(extra: string[] = []) {
  const file = await Deno.makeTempFile({ suffix: ".toml" });
  await Deno.writeTextFile(file, USERS, { mode: 0o600 });
  return await mqttBroker(["--users", file, ...extra], () => Deno.remove(file));
}

/** A broker with an MQTT port and `flags`; `close` stops it, then runs `after`. */
async function mqttBroker(flags: string[], after: () => Promise<void> = async () => {}) {
  const broker = await startDist(["broker", "--port", "0", "--mqtt-port", "0", ...flags]);
  try {
    await waitFor(() => MQTT_LINE.test(broker.stderr()), 5000, "the MQTT line");
  } catch (err) {
    await broker.stop();
    await after();
    throw err;
  }
  const port = Number(broker.stderr().match(MQTT_LINE)![1]);
  return {
    broker,
    port,
    close: async () => {
      await broker.stop();
      await after();
    },
  };
}

/**
 * Sends CONNECT on a new connection (kept in `open`): a persistent session
 * (clean 0; MQTT 5 with an expiry) unless `fields` say otherwise, with
 * `token` as the password when given. Resolves with CONNACK's code
 * (3.1.1's return code, MQTT 5's reason code) and Session Present.
 */
async function connectAs(
  open: RawMqtt[],
  port: number,
  o: { version: 4 | 5; clientId: string; token?: string; fields?: Record<string, unknown> },
): Promise<{ c: RawMqtt; code: number; present: boolean }> {
  const c = await RawMqtt.open(port, o.version);
  open.push(c);
  await c.send({
    cmd: "connect",
    protocolId: "MQTT",
    protocolVersion: o.version,
    clientId: o.clientId,
    clean: false,
    keepalive: 0,
    ...(o.token === undefined ? {} : { username: "token", password: Buffer.from(o.token) }),
    ...(o.version === 5 ? { properties: { sessionExpiryInterval: 600 } } : {}),
    ...o.fields,
  } as never, o.version);
  const ack = await c.next("connack") as unknown as Record<string, unknown>;
  const code = (o.version === 5 ? ack.reasonCode : ack.returnCode) as number;
  return { c, code, present: ack.sessionPresent === true };
}

Deno.test({
  name: "attack: a will on a topic the user may not publish is refused at CONNECT, never sent",
  ...opts,
  async fn() {
    const { broker, port, close } = await usersBroker();
    const open: RawMqtt[] = [];
    try {
      for (const version of [4, 5] as const) {
        const evil = await connectAs(open, port, {
          version,
          clientId: `evil${version}`,
          token: READER,
          fields: {
            clean: true,
            properties: undefined,
            will: {
              topic: "secret/forged",
              payload: Buffer.from("pwned"),
              qos: 1,
              retain: true,
            },
          },
        });
        // Not authorized: 3.1.1's 5, MQTT 5's 0x87.
        assert.equal(evil.code, version === 5 ? 0x87 : 5);
        await evil.c.closedWithin();
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
      await close();
    }
  },
});

/** An MQTT.js client over ws:// that never reconnects. */
function wsClient(port: number): Promise<mqtt.MqttClient> {
  return mqtt.connectAsync(`ws://127.0.0.1:${port}/mqtt`, {
    reconnectPeriod: 0,
    connectTimeout: 5000,
  });
}

Deno.test({
  name:
    "attack: a flood on --mqtt-ws-port past the file limit leaves the broker alive and its WebSocket clients connected",
  ...opts,
  async fn() {
    const broker = await startDist(["broker", "--port", "0", "--mqtt-ws-port", "0"]);
    const held: Deno.Conn[] = [];
    const clients: mqtt.MqttClient[] = [];
    try {
      const line = /MQTT over WebSocket on [\d.]+:(\d+)/;
      await waitFor(() => line.test(broker.stderr()), 5000, "the WebSocket line");
      const port = Number(broker.stderr().match(line)![1]);
      // Three WebSocket MQTT clients connected before the flood.
      for (let i = 0; i < 3; i++) clients.push(await wsClient(port));
      const closed = clients.map(() => false);
      clients.forEach((c, i) => c.on("close", () => closed[i] = true));
      const got: string[] = [];
      clients[0].on("message", (topic, payload) => got.push(`${topic} ${payload}`));
      await clients[0].subscribeAsync("after/#", { qos: 1 });
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
      assert.match(broker.stderr(), /MQTT accept failed: .*Too many open files/);
      // The clients connected before the flood are still connected, and deliver.
      assert.deepEqual(closed, [false, false, false]);
      await clients[2].publishAsync("after/flood", "still here", { qos: 1 });
      await waitFor(() => got.length === 1, 5000, "the delivery after the flood");
      assert.deepEqual(got, ["after/flood still here"]);
    } finally {
      for (const c of held) closeQuietly(c);
      for (const c of clients) await c.endAsync(true).catch(() => {});
      await broker.stop();
    }
  },
});

Deno.test({
  name:
    "attack: half-sent HTTP requests on --mqtt-ws-port count in --max-connections, the oldest closed to make room, the rest cut at the CONNECT deadline",
  ...opts,
  async fn() {
    const broker = await startDist([
      "broker",
      ...["--port", "0", "--mqtt-ws-port", "0", "--max-connections", "8"],
    ]);
    const held: Deno.Conn[] = [];
    const client: mqtt.MqttClient[] = [];
    try {
      const line = /MQTT over WebSocket on [\d.]+:(\d+)/;
      await waitFor(() => line.test(broker.stderr()), 5000, "the WebSocket line");
      const port = Number(broker.stderr().match(line)![1]);
      client.push(await wsClient(port));
      let clientClosed = false;
      client[0].on("close", () => clientClosed = true);
      // 20 requests that never finish their header (a byte now and then).
      const t0 = performance.now();
      for (let i = 0; i < 20; i++) {
        const c = await Deno.connect({ hostname: "127.0.0.1", port });
        held.push(c);
        await c.write(new TextEncoder().encode("GET /mqtt HTTP/1.1\r\nHost: x\r\n")).catch(
          () => {},
        );
      }
      const ends = held.map((c) => {
        const buf = new Uint8Array(256);
        return (async () => {
          let text = "";
          for (;;) {
            const n = await c.read(buf).catch(() => null);
            if (n === null) return { ms: performance.now() - t0, text };
            text += new TextDecoder().decode(buf.subarray(0, n));
          }
        })();
      });
      const drip = setInterval(() => {
        for (const c of held) c.write(Uint8Array.of(0x58)).catch(() => {});
      }, 2000);
      try {
        const done = await Promise.all(ends);
        // 7 slots were free (one holds the client): each of the 13 after closed the oldest
        // request to make room, at once; the last 7 were cut at the CONNECT deadline (10 s from
        // their accept). None was answered.
        assert.ok(done.every((d) => d.text === ""), JSON.stringify(done));
        const made = done.slice(0, 13);
        assert.ok(made.every((d) => d.ms < 2000), JSON.stringify(made));
        const cut = done.slice(13);
        assert.ok(cut.every((d) => d.ms > 9000 && d.ms < 14_000), JSON.stringify(cut));
      } finally {
        clearInterval(drip);
      }
      // The client that was connected before stays connected, and a new one gets in.
      assert.equal(clientClosed, false);
      client.push(await wsClient(port));
    } finally {
      for (const c of held) closeQuietly(c);
      for (const c of client) await c.endAsync(true).catch(() => {});
      await broker.stop();
    }
  },
});

Deno.test({
  name: "attack: another user's client id is refused at CONNECT; its session and connection go on",
  ...opts,
  async fn() {
    const { port, close } = await usersBroker();
    const open: RawMqtt[] = [];
    const connect = (token: string, version: 4 | 5, clientId: string) =>
      connectAs(open, port, { version, clientId, token });
    try {
      for (const [version, refused] of [[4, 5], [5, 0x85]] as const) {
        const id = `reader-session-${version}`;
        const reader = await connect(READER, version, id);
        assert.equal(reader.code, 0);
        await reader.c.send(
          { cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "news", qos: 1 }] } as never,
          version,
        );
        await reader.c.next("suback");
        // Another user with the same client id: refused, nothing of the reader's touched.
        const evil = await connect(ADMIN, version, id);
        assert.equal(evil.code, refused);
        await evil.c.closedWithin();
        // The reader's connection is still open and its subscription still delivers.
        const admin = await connect(ADMIN, version, `admin-${version}`);
        assert.equal(admin.code, 0);
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
        assert.equal(again.code, 0);
        assert.equal(again.present, true);
        await reader.c.closedWithin();
      }
    } finally {
      for (const c of open) c.close();
      await close();
    }
  },
});

Deno.test({
  name:
    "attack: after a restart, a session read back is not another user's to take, nor one made without authentication any user's",
  ...opts,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "attack-mqtt-" });
    const open: RawMqtt[] = [];
    let b: Awaited<ReturnType<typeof mqttBroker>> | undefined;
    /** A persistent session for `clientId` with a subscription, left away when its connection goes. */
    const leave = async (version: 4 | 5, clientId: string, token?: string) => {
      const s = await connectAs(open, b!.port, { version, clientId, token });
      assert.equal(s.code, 0);
      await s.c.send(
        { cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "news", qos: 1 }] } as never,
        version,
      );
      await s.c.next("suback");
      await s.c.end();
    };
    try {
      // Made while authentication was off: a session with no owner.
      b = await mqttBroker(["--data-dir", dir]);
      for (const version of [4, 5] as const) await leave(version, `legacy-${version}`);
      await b.close();
      // Then with --users: the reader's own, its owner stored with it.
      b = await usersBroker(["--data-dir", dir]);
      for (const version of [4, 5] as const) await leave(version, `owned-${version}`, READER);
      await b.close();
      b = await usersBroker(["--data-dir", dir]);
      assert.match(b.broker.stderr(), /Read 4 MQTT session\(s\) back/);
      for (const [version, refused] of [[4, 5], [5, 0x85]] as const) {
        // The owner read back: another user is refused.
        const evil = await connectAs(open, b.port, {
          version,
          clientId: `owned-${version}`,
          token: ADMIN,
        });
        assert.equal(evil.code, refused);
        // No owner: not handed to whichever user asks first, nor ended by one.
        for (const [user, token] of [["admin", ADMIN], ["reader", READER]]) {
          const taker = await connectAs(open, b.port, {
            version,
            clientId: `legacy-${version}`,
            token,
          });
          assert.equal(taker.code, refused, `${user} took legacy-${version}`);
        }
        const owner = await connectAs(open, b.port, {
          version,
          clientId: `owned-${version}`,
          token: READER,
        });
        assert.equal(owner.code, 0);
        assert.equal(owner.present, true);
      }
      await b.close();
      // Authentication off again: the sessions made without it are there for their clients.
      b = await mqttBroker(["--data-dir", dir]);
      for (const version of [4, 5] as const) {
        const back = await connectAs(open, b.port, { version, clientId: `legacy-${version}` });
        assert.equal(back.code, 0);
        assert.equal(back.present, true);
      }
    } finally {
      for (const c of open) c.close();
      await b?.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "attack: one user cannot take every persistent MQTT session: a tenth of --max-connections each (--mqtt-user-sessions)",
  ...opts,
  async fn() {
    const file = await Deno.makeTempFile({ suffix: ".toml" });
    // mallory: a credential and no permission at all.
    const MALLORY = "mallory-token-0123456789";
    await Deno.writeTextFile(file, `${USERS}\n[users.mallory]\ntoken = "${hashToken(MALLORY)}"\n`, {
      mode: 0o600,
    });
    const open: RawMqtt[] = [];
    const connect = async (port: number, token: string, clientId: string, version: 4 | 5 = 4) => {
      const c = await RawMqtt.open(port, version);
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
        ...(version === 5 ? { properties: { sessionExpiryInterval: 86_400 } } : {}),
      } as never, version);
      const ack = await c.next("connack") as unknown as Record<string, number>;
      return ack[version === 5 ? "reasonCode" : "returnCode"];
    };
    for (const [extra, share] of [[[], 5], [["--mqtt-user-sessions", "2"], 2]] as const) {
      const broker = await startDist([
        "broker",
        ...["--port", "0", "--mqtt-port", "0", "--users", file, "--max-connections", "50"],
        ...extra,
      ]);
      try {
        await waitFor(() => /MQTT on [\d.]+:\d+/.test(broker.stderr()), 5000, "the MQTT line");
        const port = Number(broker.stderr().match(/MQTT on [\d.]+:(\d+)/)![1]);
        // mallory asks for 50 persistent sessions (3.1.1 and 5): her share is taken, no more.
        const codes: number[] = [];
        for (let i = 0; i < 50; i++) {
          codes.push(await connect(port, MALLORY, `squat-${i}`, i % 2 === 0 ? 4 : 5));
        }
        const refused = codes.slice(share);
        assert.deepEqual(codes.slice(0, share), Array(share).fill(0));
        assert.ok(refused.every((c, i) => c === ((share + i) % 2 === 0 ? 3 : 0x97)), `${codes}`);
        // Her own session again (a reconnect to one she holds) is still hers.
        for (const c of open.splice(0)) await c.end();
        assert.equal(await connect(port, MALLORY, "squat-0"), 0);
        // The reader still gets a persistent session.
        assert.equal(await connect(port, READER, "reader-1"), 0);
      } finally {
        for (const c of open.splice(0)) await c.end();
        await broker.stop();
      }
    }
    await Deno.remove(file);
  },
});
