/**
 * What vanished MQTT clients leave behind, against `--max-memory`
 * (hostile review H7): persistent sessions and delayed wills are counted,
 * take at most half the budget, and past it a CONNECT that would add one
 * is refused (CONNACK 0x97), so the broker's RSS stays bounded while
 * clients resuming without a will, and everything else, are served.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import type { IConnackPacket } from "mqtt-packet";
import { hashToken } from "../auth/mod.ts";
import { startDist } from "./helpers/dist.ts";
import { BrokerClient } from "./helpers/broker.ts";
import { mqttClient, mqttOpts, RawMqtt, record } from "./helpers/mqtt.ts";
import { closeQuietly, sleep, waitFor } from "./helpers/raw.ts";

const MIB = 1024 * 1024;
const MQTT_LINE = /MQTT on [\d.]+:(\d+)/;

function rssOf(pid: number): number {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  return Number(status.match(/VmRSS:\s+(\d+)/)![1]) * 1024;
}

/** User properties of 15 × 60 KB: with its payload a will of about 1 MB, as the review's repro sent. */
const big = Object.fromEntries(
  Array.from({ length: 15 }, (_, k) => [`k${k}`, "v".repeat(60_000)]),
);

/**
 * MQTT 5 CONNECT of a persistent session (a day) with a will of `size` bytes
 * delayed a day (on `topic`, with ~900 KB of user properties unless `small`,
 * as `token`'s user when given); its CONNACK code.
 */
async function vanish(
  port: number,
  clientId: string,
  size: number,
  o: { token?: string; topic?: string; small?: boolean } = {},
): Promise<number> {
  const raw = await RawMqtt.open(port, 5);
  try {
    // A refused CONNECT may be cut before it is all sent (a reset while writing).
    await raw.send({
      cmd: "connect",
      protocolId: "MQTT",
      protocolVersion: 5,
      clientId,
      clean: false,
      keepalive: 60,
      ...(o.token === undefined ? {} : { username: "token", password: Buffer.from(o.token) }),
      properties: { sessionExpiryInterval: 86_400 },
      ...(size === 0 ? {} : {
        will: {
          topic: o.topic ?? `will/${clientId}`,
          payload: Buffer.alloc(size, 66),
          qos: 0,
          retain: false,
          properties: {
            willDelayInterval: 86_400,
            ...(o.small ? {} : { userProperties: big }),
          },
        },
      }),
    }, 5).catch(() => {});
    // Refused: CONNACK 0x97, or (a CONNECT too large to buffer now) closed before it is read.
    await waitFor(() => raw.packets.length > 0 || raw.closed, 5000, "CONNACK or a close");
    const ack = raw.packets.find((p) => p.cmd === "connack") as IConnackPacket | undefined;
    return ack === undefined ? -1 : ack.reasonCode ?? -1;
  } finally {
    // Gone without DISCONNECT: the will waits for its delay, the session for its client.
    closeQuietly(raw.conn);
  }
}

Deno.test({
  name:
    "mqtt memory: delayed wills and away sessions count in --max-memory, take at most half (wills a quarter), more are refused; RSS stays bounded",
  ...mqttOpts,
  async fn() {
    const BUDGET = 16 * MIB;
    // The largest will payload MQTT has (a two-byte length), as the review's repro sent.
    const WILL = 65_000;
    const broker = await startDist([
      "broker",
      ...[
        "--port",
        "0",
        "--mqtt-port",
        "0",
        "--max-memory",
        String(BUDGET),
        "--max-frame",
        String(2 * MIB),
      ],
    ]);
    let native: BrokerClient | undefined;
    try {
      await waitFor(() => MQTT_LINE.test(broker.stderr()), 5000, "the MQTT line");
      const port = Number(broker.stderr().match(MQTT_LINE)![1]);
      native = await BrokerClient.connect(broker.port);
      const stats = async () => {
        const s = await native!.stats();
        return { mqtt: s.mqtt as Record<string, number>, memory: s.memory as { bytes: number } };
      };
      const before = rssOf(broker.child.pid);
      // 300 clients leave a 1 MB will each (300 MB in all, 18 × the budget) and vanish.
      const codes: Record<number, number> = {};
      for (let i = 0; i < 300; i++) {
        const code = await vanish(port, `w${i}`, WILL);
        codes[code] = (codes[code] ?? 0) + 1;
      }
      await sleep(500);
      const s = await stats();
      const kept = codes[0] ?? 0;
      // Wills may take half of that half: 3 or 4 of them (a will and a session each); the rest
      // were refused.
      assert.ok(kept >= 3 && kept <= 4, JSON.stringify(codes));
      assert.equal((codes[0x97] ?? 0) + (codes[-1] ?? 0), 300 - kept, JSON.stringify(codes));
      assert.equal(s.mqtt.wills_delayed, kept);
      assert.ok(s.mqtt.sessions_bytes <= BUDGET / 2, JSON.stringify(s.mqtt));
      // The rest of the half is kept for persistent sessions: one without a will is accepted.
      assert.equal(await vanish(port, "no-will", 0), 0);
      assert.ok(s.memory.bytes >= s.mqtt.sessions_bytes, JSON.stringify(s.memory));
      const grown = rssOf(broker.child.pid) - before;
      // What was kept (8 MiB), the garbage of reading it (about 5 MB per 1 MB will, collected
      // later) and no more however many come (before: 100 of them grew it by 83–91 MiB).
      assert.ok(grown < 4 * BUDGET, `RSS grew by ${(grown / MIB).toFixed(1)} MiB`);
      // Without a will, a client resumes its session (its delayed will is cancelled: room again).
      const back = await RawMqtt.open(port, 5);
      await back.send({
        cmd: "connect",
        protocolId: "MQTT",
        protocolVersion: 5,
        clientId: "w0",
        clean: false,
        keepalive: 60,
        properties: { sessionExpiryInterval: 86_400 },
      }, 5);
      const ack = (await back.next("connack")) as IConnackPacket;
      assert.equal(ack.reasonCode, 0);
      assert.equal(ack.sessionPresent, true);
      closeQuietly(back.conn);
      await sleep(500);
      const after = await stats();
      assert.equal(after.mqtt.wills_delayed, kept - 1);
      assert.ok(after.mqtt.sessions_bytes < s.mqtt.sessions_bytes);
      // The rest of the budget is the broker's: clean clients subscribe and get publishes.
      const sub = await mqttClient(port);
      const pub = await mqttClient(port);
      const got = record(sub);
      await sub.subscribeAsync("still/serving", { qos: 1 });
      await pub.publishAsync("still/serving", "yes", { qos: 1 });
      await waitFor(() => got.length === 1, 5000, "the delivery");
      await sub.endAsync();
      await pub.endAsync();
    } finally {
      native?.close();
      await broker.stop();
    }
  },
});

Deno.test({
  name:
    "mqtt memory: with --users, one user's sessions and wills take at most an eighth of their half; others' persistent sessions are still accepted",
  ...mqttOpts,
  async fn() {
    const BUDGET = 16 * MIB;
    const WILL = 65_000;
    const MALLORY = "mallory-token-0123456789";
    const ALICE = "alice-token-0123456789";
    const file = await Deno.makeTempFile({ suffix: ".toml" });
    // mallory may publish on her will's topic only (a will needs that grant).
    await Deno.writeTextFile(
      file,
      `[users.mallory]\ntoken = "${hashToken(MALLORY)}"\npublish = ["/m/will"]\n\n` +
        `[users.alice]\ntoken = "${hashToken(ALICE)}"\npublish = ["/a"]\nsubscribe = ["/a"]\n`,
      { mode: 0o600 },
    );
    const broker = await startDist([
      "broker",
      ...["--port", "0", "--mqtt-port", "0", "--users", file, "--max-memory", String(BUDGET)],
    ]);
    const open: RawMqtt[] = [];
    try {
      await waitFor(() => MQTT_LINE.test(broker.stderr()), 5000, "the MQTT line");
      const port = Number(broker.stderr().match(MQTT_LINE)![1]);
      // mallory leaves 160 sessions, each with a 65 KB will delayed a day, and vanishes (before:
      // about 110 of them filled the whole half, and every other new persistent session was refused).
      const codes: number[] = [];
      for (let i = 0; i < 160; i++) {
        codes.push(
          await vanish(port, `m${i}`, WILL, { token: MALLORY, topic: "m/will", small: true }),
        );
      }
      const kept = codes.filter((c) => c === 0).length;
      // Her share: 1 MiB (an eighth of the half) holds 14 of them (a will and a session each).
      assert.ok(kept >= 12 && kept <= 14, `${codes}`);
      assert.deepEqual(codes.slice(0, kept), Array(kept).fill(0));
      assert.ok(codes.slice(kept).every((c) => c === 0x97 || c === -1), `${codes}`);
      // Her live wills past the share are refused too (3.1.1, clean session: CONNACK 3).
      const live = await RawMqtt.open(port, 4);
      open.push(live);
      await live.send({
        cmd: "connect",
        protocolId: "MQTT",
        protocolVersion: 4,
        clientId: "m-live",
        clean: true,
        keepalive: 0,
        username: "token",
        password: Buffer.from(MALLORY),
        will: { topic: "m/will", payload: Buffer.alloc(WILL, 66), qos: 0, retain: false },
      } as never, 4);
      assert.equal(((await live.next("connack")) as IConnackPacket).returnCode, 3);
      // alice: a persistent session (3.1.1), and one with a will (5), are accepted.
      const alice = await RawMqtt.open(port, 4);
      open.push(alice);
      await alice.send({
        cmd: "connect",
        protocolId: "MQTT",
        protocolVersion: 4,
        clientId: "alice-1",
        clean: false,
        keepalive: 0,
        username: "token",
        password: Buffer.from(ALICE),
      } as never, 4);
      assert.equal(((await alice.next("connack")) as IConnackPacket).returnCode, 0);
      assert.equal(
        await vanish(port, "alice-2", 1000, { token: ALICE, topic: "a/will", small: true }),
        0,
      );
    } finally {
      for (const c of open) closeQuietly(c.conn);
      await broker.stop();
      await Deno.remove(file);
    }
  },
});
