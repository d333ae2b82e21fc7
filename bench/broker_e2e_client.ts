/**
 * One client process of the end-to-end broker bench (broker_e2e.ts): a
 * publisher or a subscriber, on dist with its client library
 * (`@dist/dist/client`) or on nats-server with nats.js, sending a small
 * JSON object per message as an application would (the library encodes
 * it: dist's publish takes the object, NATS gets its JSON text).
 *
 * `deno run -A bench/broker_e2e_client.ts '{"system","role","address",...}'`
 * prints `ready` once subscribed, then one JSON line: what it did.
 *
 * Values carry their send time (`t`, epoch ms with microseconds:
 * performance.timeOrigin + now(), one clock for every process here).
 *
 * The first `skip` messages warm the processes up and are not measured:
 * a freshly started process runs its first thousands of messages through
 * the interpreter and the compiler, and at 10,000 msgs/s that start alone
 * made most of the slowest 1 % of both systems (hundreds of messages of
 * 2–20 ms in the first 100 ms of a 5 s run).
 */
import process from "node:process";

interface Task {
  system: "dist" | "nats";
  role: "pub" | "sub";
  /** host:port */
  address: string;
  count: number;
  /** Messages per second; 0: as fast as the library goes, a round trip every 1,000. */
  rate: number;
  /** Messages sent first and not measured (they warm the processes up). */
  skip?: number;
  /**
   * How the subscriber takes its messages: `iterator` (`for await`, each
   * library's ordinary way) or `callback` (each library's fastest: nats.js's
   * `callback` option, which it documents as the faster one, with `m.json()`,
   * and dist's `onMessage`, which parses the values of a read together),
   * the value parsed as JSON either way. `floor` (dist only):
   * no library, a raw socket read by hand (see floorSubscriber).
   */
  style?: "iterator" | "callback" | "floor";
  /** The values sent: one layout (a sensor's reading), or four kinds in turn (see `value`). */
  shapes?: "reading" | "mixed";
}

const task = JSON.parse(Deno.args[0]) as Task;
const clock = () => performance.timeOrigin + performance.now();
const encoder = new TextEncoder();
const decoder = new TextDecoder();
const TOPIC = "e2e";
/**
 * Flat out, the publisher's round trips in flight at once (`E2E_WINDOW`,
 * both systems): 1, the figures' history, waits for each 1,000's before
 * making the next; 2 makes the next 1,000 while the server routes the last.
 */
const WINDOW = Math.max(1, Number(Deno.env.get("E2E_WINDOW") ?? "1") || 1);

/**
 * The value sent: a sensor's reading, a small object (about 128 bytes as
 * JSON), the same layout every time with other digits; with `shapes:
 * "mixed"`, one of four kinds in turn (that reading, a log line of varying
 * length, an order with nested members and non-ASCII text, a two-member
 * status), 40 to 260 bytes, so that no layout repeats from one message to
 * the next.
 */
function value(n: number) {
  const t = clock();
  if (task.shapes !== "mixed") return reading(t, n);
  switch (n & 3) {
    case 0:
      return reading(t, n);
    case 1:
      return {
        t,
        n,
        level: n % 7 === 0 ? "warn" : "info",
        msg: `GET /api/items/${n % 1000} served in ${(n * 7) % 97} ms${" ".repeat(n % 13)}`,
      };
    case 2:
      return {
        t,
        n,
        id: `ord-${n}`,
        customer: { name: "Zoë Ødegaard", country: "NO", vip: n % 5 === 0 },
        items: [{ sku: "A-12", qty: 1 + (n % 5), price: 9.99 }, {
          sku: "B-7",
          qty: 1,
          price: 24.5,
        }],
        total: 9.99 * (1 + (n % 5)) + 24.5,
      };
    default:
      return { t, n, up: (n & 4) === 0 };
  }
}

function reading(t: number, n: number) {
  return { t, n, name: "sensor-12", ok: true, temp: 21.5, tags: ["a", "b"], unit: "°C" };
}

function quantile(sorted: Float64Array, q: number): number {
  return sorted.length === 0
    ? NaN
    : sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)];
}

/**
 * The process's CPU time (user + system) when the first measured message
 * was sent or received: CPU per message is counted from there, without the
 * process's start and warm-up.
 */
let measured: ReturnType<typeof process.cpuUsage> | undefined;
/**
 * The subscriber's CPU time since `measured` when its last message arrived:
 * not the sort of its latencies after (about 0.07 µs a message of 200,000).
 */
let cpuAtLast: ReturnType<typeof process.cpuUsage> | undefined;

/**
 * Publishes `count` messages, paced at `rate` (in 1 ms steps) or flat out
 * (a round trip every 1,000, at most WINDOW of them in flight).
 */
async function publishAll(send: (n: number) => void, roundTrip: () => Promise<void>) {
  const t0 = clock();
  const skip = Math.min(task.skip ?? 0, task.count - 1);
  const inFlight: Promise<void>[] = [];
  for (let n = 0; n < task.count;) {
    if (n >= skip && measured === undefined) measured = process.cpuUsage();
    if (task.rate > 0) {
      const due = Math.min(task.count, Math.floor(((clock() - t0) / 1000) * task.rate) + 1);
      while (n < due) send(n++);
      await new Promise((r) => setTimeout(r, 1));
    } else {
      send(n++);
      if (n % 1000 === 0) {
        inFlight.push(roundTrip());
        if (inFlight.length >= WINDOW) await inFlight.shift();
      }
    }
  }
  await Promise.all(inFlight);
  await roundTrip();
  return { sent: task.count, seconds: (clock() - t0) / 1000 };
}

async function run(): Promise<Record<string, unknown>> {
  const skip = Math.min(task.skip ?? 0, task.count - 1);
  const delays = new Float64Array(task.count - skip);
  let received = 0;
  let first = 0;
  let last = 0;
  /**
   * The longest silence between two measured arrivals: at 10,000 msgs/s a
   * p99 is decided by whether one stall of a process (not scheduled, a
   * collection) holds up 1 % of the run's messages at once (see README).
   */
  let stall = 0;
  const got = (v: { t: number }) => {
    const now = clock();
    if (received > skip && now - last > stall) stall = now - last;
    last = now;
    if (received >= skip) delays[received - skip] = last - v.t;
    if (received++ === skip) {
      first = last;
      measured = process.cpuUsage();
    }
    if (received === task.count) cpuAtLast = process.cpuUsage(measured);
  };
  const finish = () => {
    const sorted = delays.subarray(0, received - skip).sort();
    return {
      received,
      // Measured messages after the first one, from its arrival to the last one's.
      msgs_per_s: (received - skip - 1) / ((last - first) / 1000),
      p50_ms: quantile(sorted, 0.5),
      p99_ms: quantile(sorted, 0.99),
      stall_ms: stall,
    };
  };
  if (task.role === "sub" && task.style === "floor") {
    return await floorSubscriber(got, () => received, finish);
  }
  // Each process loads only its own system's library (not the other's code and heap).
  if (task.system === "dist") {
    const { connect } = await import("../clients/mod.ts");
    const broker = await connect(task.address);
    try {
      if (task.role === "pub") {
        return await publishAll(
          (n) => void broker.publish(`/${TOPIC}`, value(n), { retain: false }),
          async () =>
            void await broker.publish(`/${TOPIC}/sync`, 0, { confirm: true, retain: false }),
        );
      }
      if (task.style === "callback") {
        let done!: () => void;
        const all = new Promise<void>((r) => done = r);
        await broker.subscribe(`/${TOPIC}`, {
          onMessage: (m) => {
            if (m.topic !== `/${TOPIC}` || received === task.count) return;
            got(m.value as { t: number });
            if (received === task.count) done();
          },
        });
        console.log("ready");
        await all;
        return finish();
      }
      const sub = await broker.subscribe(`/${TOPIC}`, { buffer: 65_536 });
      console.log("ready");
      for await (const m of sub) {
        if (m.topic !== `/${TOPIC}`) continue;
        got(m.value as { t: number });
        if (received === task.count) break;
      }
      return finish();
    } finally {
      broker.close();
    }
  }
  const [host, port] = task.address.split(":");
  const { connect: natsConnect } = await import("nats");
  const nc = await natsConnect({ servers: `${host}:${port}` });
  try {
    if (task.role === "pub") {
      return await publishAll(
        (n) => nc.publish(TOPIC, encoder.encode(JSON.stringify(value(n)))),
        () => nc.flush(),
      );
    }
    if (task.style === "callback") {
      let done!: () => void;
      const all = new Promise<void>((r) => done = r);
      nc.subscribe(TOPIC, {
        callback: (_err, m) => {
          if (received === task.count) return;
          got(m.json());
          if (received === task.count) done();
        },
      });
      await nc.flush();
      console.log("ready");
      await all;
      return finish();
    }
    const sub = nc.subscribe(TOPIC);
    await nc.flush();
    console.log("ready");
    for await (const m of sub) {
      got(JSON.parse(decoder.decode(m.data)));
      if (received === task.count) break;
    }
    return finish();
  } finally {
    await nc.close();
  }
}

/**
 * The floor under dist's library: a subscriber on a raw socket (handshake
 * and subscribe from the tests' helper), 64 KiB reads, frames split by
 * hand, each delivery's value found by its fixed layout (this bench's
 * topic, the sid last), decoded and parsed as the callback does. What the
 * library costs is the callback's CPU per message less this one's.
 */
async function floorSubscriber(
  got: (v: { t: number }) => void,
  received: () => number,
  finish: () => Record<string, unknown>,
): Promise<Record<string, unknown>> {
  const { rawSubscriber } = await import("../tests/helpers/broker.ts");
  const { conn } = await rawSubscriber(Number(task.address.split(":")[1]), { topic: `/${TOPIC}` });
  console.log("ready");
  const READ = 64 * 1024;
  const buf = new Uint8Array(2 * READ);
  const view = new DataView(buf.buffer);
  const head = encoder.encode(
    `{"method":"broker.message","params":{"topic":"/${TOPIC}","value":`,
  );
  const COMMA = 0x2c;
  let have = 0;
  try {
    while (received() < task.count) {
      const n = await conn.read(buf.subarray(have, have + READ));
      if (n === null) break;
      have += n;
      let at = 0;
      while (have - at >= 4 && received() < task.count) {
        const len = view.getUint32(at);
        if (have - at < 4 + len) break;
        const f = buf.subarray(at + 4, at + 4 + len);
        at += 4 + len;
        if (f[head.length - 10] !== 0x22) continue; // another topic (the publisher's sync one)
        let end = f.length - 2; // before }}, back over the sid to the comma before "sid"
        while (f[end - 1] !== COMMA) end--;
        got(JSON.parse(decoder.decode(f.subarray(head.length, end - 1))));
      }
      buf.copyWithin(0, at, have);
      have -= at;
    }
    return finish();
  } finally {
    conn.close();
  }
}

// The process's CPU time (user + system) per measured message (see `measured`).
const result = await run();
const cpu = cpuAtLast ?? process.cpuUsage(measured);
const measuredCount = task.count - Math.min(task.skip ?? 0, task.count - 1);
result.cpu_us_per_msg = (cpu.user + cpu.system) / measuredCount;
// The kernel's part of it (system time: mostly the socket reads and writes on loopback).
result.sys_us_per_msg = cpu.system / measuredCount;
console.log(JSON.stringify(result));
