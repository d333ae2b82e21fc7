/**
 * Malformed MQTT packets mqtt-packet's parser takes and MQTT (and
 * mosquitto) refuse (hostile review 39b Q7), each written as raw bytes:
 * the broker took them all. Now MQTT 5 gets the refusal's reason (CONNACK
 * before CONNECT is accepted, DISCONNECT after) and 3.1.1 is closed, as
 * mosquitto 2 closes both (checked against it: /work/wt/x43-data/q7). And
 * an MQTT 5 PUBREL for an id the broker does not hold gets PUBCOMP 0x92
 * Packet Identifier not found (it got 0x00 Success).
 */
import assert from "node:assert/strict";
import { mqttOpts as opts, withMqttBroker } from "./helpers/mqtt.ts";
import { sleep } from "./helpers/raw.ts";

const encoder = new TextEncoder();

function vbi(n: number): number[] {
  const out = [];
  do {
    const b = n % 128;
    n = Math.floor(n / 128);
    out.push(n > 0 ? b | 0x80 : b);
  } while (n > 0);
  return out;
}

/** A two-byte length and the bytes (a UTF-8 string or binary data). */
function str(s: string | number[]): number[] {
  const b = typeof s === "string" ? [...encoder.encode(s)] : s;
  return [b.length >> 8, b.length & 0xff, ...b];
}

function packet(first: number, body: number[]): Uint8Array {
  return Uint8Array.from([first, ...vbi(body.length), ...body]);
}

const SESSION_EXPIRY = (s: number) => [0x11, 0, 0, s >> 8, s & 0xff];

/** A CONNECT (level 4 or 5) with `props` (MQTT 5), and what else its payload holds. */
function connect(
  v: 4 | 5,
  o: {
    props?: number[];
    will?: { props?: number[] };
    user?: string;
    password?: string;
    trailing?: number[];
    id?: string;
  } = {},
): Uint8Array {
  let flags = 0x02;
  if (o.will !== undefined) flags |= 0x04;
  if (o.user !== undefined) flags |= 0x80;
  if (o.password !== undefined) flags |= 0x40;
  const props = o.props ?? [];
  const body = [
    ...str("MQTT"),
    v,
    flags,
    0,
    60,
    ...(v === 5 ? [...vbi(props.length), ...props] : []),
  ];
  body.push(...str(o.id ?? "q7"));
  if (o.will !== undefined) {
    const wp = o.will.props ?? [];
    if (v === 5) body.push(...vbi(wp.length), ...wp);
    body.push(...str("w/t"), ...str("bye"));
  }
  if (o.user !== undefined) body.push(...str(o.user));
  if (o.password !== undefined) body.push(...str(o.password));
  body.push(...(o.trailing ?? []));
  return packet(0x10, body);
}

/** What the broker answered to `packets` (written one by one) within `ms`, and whether it closed. */
async function exchange(
  port: number,
  packets: Uint8Array[],
  ms = 1500,
): Promise<{ got: number[]; closed: boolean }> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const got: number[] = [];
  let closed = false;
  const reading = (async () => {
    const buf = new Uint8Array(4096);
    while (true) {
      const n = await conn.read(buf).catch(() => null);
      if (n === null) break;
      got.push(...buf.subarray(0, n));
    }
    closed = true;
  })();
  for (const p of packets) {
    await conn.write(p).catch(() => 0);
    await sleep(50);
  }
  const until = performance.now() + ms;
  while (!closed && performance.now() < until) await sleep(20);
  const closedByBroker = closed;
  try {
    conn.close();
  } catch {
    // Closed by the broker.
  }
  await reading;
  return { got, closed: closedByBroker };
}

/** The CONNACK's reason code at the start of `got` (-1: none), and what follows it. */
function afterConnack(got: number[]): { code: number; rest: number[] } {
  if (got.length < 4 || got[0] !== 0x20) return { code: -1, rest: got };
  return { code: got[3], rest: got.slice(2 + got[1]) };
}

const refusedAtConnect: [string, Uint8Array, number][] = [
  [
    "a duplicated Session Expiry Interval",
    connect(5, { props: [...SESSION_EXPIRY(10), ...SESSION_EXPIRY(20)] }),
    0x82,
  ],
  ["a duplicated Receive Maximum", connect(5, { props: [0x21, 0, 5, 0x21, 0, 6] }), 0x82],
  [
    "a will with a duplicated Will Delay Interval",
    connect(5, { will: { props: [0x18, 0, 0, 0, 1, 0x18, 0, 0, 0, 2] } }),
    0x82,
  ],
  ["bytes after its payload", connect(5, { trailing: [0, 1, 2] }), 0x81],
];

for (const [what, bytes, code] of refusedAtConnect) {
  Deno.test(
    `mqtt 5 CONNECT with ${what}: CONNACK 0x${code.toString(16)}, closed`,
    opts,
    () =>
      withMqttBroker(async (b) => {
        const { got, closed } = await exchange(b.mqttPort, [bytes]);
        assert.equal(afterConnack(got).code, code, `answered ${got}`);
        assert(closed, "closed");
      }),
  );
}

const closedAtConnect: [string, Uint8Array][] = [
  ["a password without a user name [MQTT-3.1.2-22]", connect(4, { password: "pw" })],
  ["bytes after its payload", connect(4, { trailing: [0, 1, 2] })],
];

for (const [what, bytes] of closedAtConnect) {
  Deno.test(
    `mqtt 3.1.1 CONNECT with ${what}: closed, no CONNACK`,
    opts,
    () =>
      withMqttBroker(async (b) => {
        const { got, closed } = await exchange(b.mqttPort, [bytes]);
        assert.deepEqual(got, [], "nothing answered");
        assert(closed, "closed");
      }),
  );
}

Deno.test(
  "mqtt packets MQTT allows stay taken: MQTT 5 password alone, user properties twice",
  opts,
  () =>
    withMqttBroker(async (b) => {
      const alone = await exchange(b.mqttPort, [connect(5, { password: "pw" })], 300);
      assert.equal(afterConnack(alone.got).code, 0);
      assert(!alone.closed);
      const user = [0x26, ...str("a"), ...str("b")];
      const twice = await exchange(b.mqttPort, [connect(5, { props: [...user, ...user] })], 300);
      assert.equal(afterConnack(twice.got).code, 0);
      assert(!twice.closed);
      // A PUBACK with a Reason String and user properties twice: taken (an unknown id is ignored).
      const props = [0x1f, ...str("r"), ...user, ...user];
      const ack = packet(0x40, [0, 9, 0, props.length, ...props]);
      const acked = await exchange(b.mqttPort, [connect(5), ack], 300);
      assert.deepEqual(afterConnack(acked.got).rest, []);
      assert(!acked.closed);
    }),
);

/** Packets after an accepted CONNECT: what MQTT 5 is told (DISCONNECT's reason), 3.1.1 closed. */
const refusedAfter: [string, (v: 4 | 5) => Uint8Array, number][] = [
  [
    "SUBSCRIBE with packet identifier 0",
    (v) => packet(0x82, [0, 0, ...(v === 5 ? [0] : []), ...str("a/b"), 0]),
    0x81,
  ],
  [
    "UNSUBSCRIBE with packet identifier 0",
    (v) => packet(0xa2, [0, 0, ...(v === 5 ? [0] : []), ...str("a/b")]),
    0x81,
  ],
  // MQTT 5 §3.10.3: a Protocol Error (mosquitto says 0x81), as a SUBSCRIBE with none.
  ["UNSUBSCRIBE with no filter", (v) => packet(0xa2, [0, 7, ...(v === 5 ? [0] : [])]), 0x82],
];

for (const [what, make, code] of refusedAfter) {
  for (const v of [4, 5] as const) {
    const answer = v === 5 ? `DISCONNECT 0x${code.toString(16)}` : "closed";
    Deno.test(
      `mqtt ${v === 5 ? "5" : "3.1.1"} ${what}: ${answer}`,
      opts,
      () =>
        withMqttBroker(async (b) => {
          const { got, closed } = await exchange(b.mqttPort, [connect(v), make(v)]);
          const { code: accepted, rest } = afterConnack(got);
          assert.equal(accepted, 0);
          assert.deepEqual(rest, v === 5 ? [0xe0, 2, code, 0] : [], "what it was told");
          assert(closed, "closed");
        }),
    );
  }
}

const REASON_STRING = (t: string) => [0x1f, ...str(t)];

for (const [name, first] of [["PUBACK", 0x40], ["PUBREC", 0x50], ["PUBREL", 0x62]] as const) {
  Deno.test(
    `mqtt 5 ${name} with a duplicated Reason String: DISCONNECT 0x82`,
    opts,
    () =>
      withMqttBroker(async (b) => {
        const props = [...REASON_STRING("a"), ...REASON_STRING("b")];
        const ack = packet(first, [0, 9, 0, props.length, ...props]);
        const { got, closed } = await exchange(b.mqttPort, [connect(5), ack]);
        assert.deepEqual(afterConnack(got).rest, [0xe0, 2, 0x82, 0]);
        assert(closed, "closed");
      }),
  );
}

Deno.test(
  "mqtt 5 DISCONNECT with a duplicated Session Expiry Interval: a protocol error, its will published",
  opts,
  () =>
    withMqttBroker(async (b) => {
      const watcher = await Deno.connect({ hostname: "127.0.0.1", port: b.mqttPort });
      await watcher.write(connect(4, { id: "watcher" }));
      await watcher.write(packet(0x82, [0, 1, ...str("w/t"), 0]));
      const seen: number[] = [];
      const reading = (async () => {
        const buf = new Uint8Array(4096);
        while (true) {
          const n = await watcher.read(buf).catch(() => null);
          if (n === null) break;
          seen.push(...buf.subarray(0, n));
        }
      })();
      await sleep(200);
      const disconnect = packet(0xe0, [0, 10, ...SESSION_EXPIRY(10), ...SESSION_EXPIRY(20)]);
      const { got, closed } = await exchange(b.mqttPort, [
        connect(5, { props: SESSION_EXPIRY(10), will: {} }),
        disconnect,
      ]);
      assert.deepEqual(afterConnack(got).rest, [0xe0, 2, 0x82, 0], "told: protocol error");
      assert(closed);
      await sleep(300);
      // Main: taken as a normal DISCONNECT, the will dropped.
      assert(new TextDecoder().decode(Uint8Array.from(seen)).includes("bye"), "the will went");
      watcher.close();
      await reading;
    }),
);

Deno.test(
  "mqtt PUBREL for an unknown packet id: MQTT 5 PUBCOMP 0x92, 3.1.1 PUBCOMP",
  opts,
  () =>
    withMqttBroker(async (b) => {
      const pubrel = packet(0x62, [0, 9]);
      const v5 = afterConnack((await exchange(b.mqttPort, [connect(5), pubrel], 300)).got).rest;
      // Main: 70 02 00 09, Success.
      assert.deepEqual(v5, [0x70, 3, 0, 9, 0x92], "Packet Identifier not found");
      const v4 = afterConnack((await exchange(b.mqttPort, [connect(4), pubrel], 300)).got).rest;
      assert.deepEqual(v4, [0x70, 2, 0, 9]);
      // A PUBREL for the QoS 2 publish it holds: PUBCOMP, Success.
      const qos2 = packet(0x34, [...str("a/b"), 0, 5, 0, 0x78]);
      const known = await exchange(b.mqttPort, [connect(5), qos2, packet(0x62, [0, 5])], 300);
      assert.deepEqual(afterConnack(known.got).rest, [0x50, 2, 0, 5, 0x70, 2, 0, 5]);
    }),
);
