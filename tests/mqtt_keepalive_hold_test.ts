/**
 * The broker's own hold on an MQTT connection is not the client's silence
 * (hostile review 35, H9): while a SUBSCRIBE of 5,000 filters waits for its
 * costly turns behind other sources' topic listings, nothing more is read
 * from its connection. The keep-alive clock ran meanwhile, so a client
 * pinging every half keep-alive was cut "silent for 1.5 × keep-alive"
 * before its SUBACK. The broker is a child process.
 */
import assert from "node:assert/strict";
import net from "node:net";
import { Buffer } from "node:buffer";
import mqttPacket from "mqtt-packet";
import { startDist } from "./helpers/dist.ts";
import { RawMqtt } from "./helpers/mqtt.ts";
import { concat, jsonFrame, sleep, waitFor, writeAll } from "./helpers/raw.ts";

const MQTT_LINE = /MQTT on [\d.]+:(\d+)/;
const TOPICS = 20_000;
const SOURCES = 4;

/** A native client from `from` that keeps 50 listings of 1,000 topics pipelined until stopped. */
function lister(port: number, from: string, stopped: () => boolean): net.Socket {
  const burst = () =>
    Buffer.from(
      concat(Array.from({ length: 50 }, (_, i) =>
        jsonFrame({ id: i + 1, method: "broker.topics", params: { prefix: "/", limit: 1000 } }))),
    );
  const hello = {
    op: "hello",
    v: 1,
    codec: "json",
    role: "client",
    name: "lister",
    heartbeat: 60_000,
  };
  const s = net.connect({ host: "127.0.0.1", port, localAddress: from }, () => {
    s.write(Buffer.from(jsonFrame(hello)));
    s.write(burst());
  });
  let buf = Buffer.alloc(0);
  let got = 0;
  s.on("data", (d: Buffer) => {
    buf = Buffer.concat([buf, d]);
    while (buf.length >= 4 && buf.length >= 4 + buf.readUInt32BE(0)) {
      buf = buf.subarray(4 + buf.readUInt32BE(0));
      if (++got % 50 === 1 && got > 1 && !stopped()) s.write(burst());
    }
  });
  s.on("error", () => {});
  return s;
}

Deno.test("mqtt: a client whose SUBSCRIBE waits for its turns behind others' listings is not cut as silent", async () => {
  const broker = await startDist([
    "broker",
    "--port",
    "0",
    "--mqtt-port",
    "0",
    "--heartbeat",
    "60s",
  ]);
  const listers: net.Socket[] = [];
  let stopped = false;
  let client: RawMqtt | undefined;
  let pinger: ReturnType<typeof setInterval> | undefined;
  let pub: Deno.Conn | undefined;
  try {
    await waitFor(() => MQTT_LINE.test(broker.stderr()), 5000, "the MQTT line");
    const mqttPort = Number(broker.stderr().match(MQTT_LINE)![1]);
    pub = await Deno.connect({ hostname: "127.0.0.1", port: broker.port });
    const hello = {
      op: "hello",
      v: 1,
      codec: "json",
      role: "client",
      name: "pub",
      heartbeat: 60_000,
    };
    const publishes = Array.from(
      { length: TOPICS },
      (_, i) =>
        jsonFrame({ method: "broker.publish", params: { topic: `/t/${i % 100}/${i}`, value: i } }),
    );
    await writeAll(pub, concat([jsonFrame(hello), ...publishes]));
    for (let a = 0; a < SOURCES; a++) {
      listers.push(lister(broker.port, `127.0.0.${2 + a}`, () => stopped));
    }
    await sleep(500);
    // Keep-alive 2 s: silent for 3 s is cut (the hold is far longer). It pings every second throughout.
    client = await RawMqtt.connect(mqttPort, { clientId: "ka", keepalive: 2 });
    const c = client;
    pinger = setInterval(() => c.send({ cmd: "pingreq" }).catch(() => {}), 1000);
    const filters = Array.from(
      { length: 10_000 },
      (_, i) => ({ topic: `s/${i}/+`, qos: 0 as const }),
    );
    const t0 = performance.now();
    await c.write(mqttPacket.generate({ cmd: "subscribe", messageId: 1, subscriptions: filters }));
    await waitFor(() => c.closed || c.packets.some((p) => p.cmd === "suback"), 60_000, "SUBACK");
    const took = performance.now() - t0;
    // Before: closed after 3 s of the broker's own hold, no SUBACK.
    assert.ok(!c.closed, `closed ${took.toFixed(0)} ms into its SUBSCRIBE:\n${broker.stderr()}`);
    console.log(`SUBACK after ${took.toFixed(0)} ms (keep-alive 2 s)`);
    // Its pings sent meanwhile are answered, and it stays connected.
    await c.next("pingresp", 5000);
    await sleep(2000);
    assert.ok(!c.closed);
  } finally {
    stopped = true;
    if (pinger !== undefined) clearInterval(pinger);
    client?.close();
    pub?.close();
    for (const s of listers) s.destroy();
    await broker.stop();
  }
});
