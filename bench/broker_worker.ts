/**
 * One client of the broker suite, run in a Worker thread so that the
 * publisher and each subscriber have a thread of their own (as separate
 * processes would) while sharing counters with the suite through a
 * SharedArrayBuffer:
 *
 * - counters[i] (i < 16): messages subscriber i has received;
 * - the publisher keeps at most `window` messages ahead of the slowest
 *   subscriber, so no subscriber is cut off as slow and every message is
 *   counted where it arrives (fire-and-forget: no confirmations);
 * - latency: values carry their send time (ms since the time origin of
 *   the suite, shared by every thread) and subscribers keep the delays.
 *
 * The same harness drives dist (wire/ `dial`, pre-framed publishes) and NATS
 * (the npm `nats` client), with the same payload bytes.
 */
import { connect as natsConnect, type NatsConnection } from "nats";
import {
  codecByName,
  DELIVERY_PREFIX,
  dial,
  mayStartWith,
  OutBuffer,
  type Peer,
  type RawDelivery,
  type RawFrameHandler,
  readDelivery,
  TopicCache,
} from "../wire/mod.ts";

export interface WorkerTask {
  system: "dist" | "nats";
  role: "sub" | "pub";
  port: number;
  topic: string;
  /** Messages to publish, or to receive before reporting done. */
  count: number;
  payload: number;
  codec?: string;
  counters: SharedArrayBuffer;
  /** Subscriber index (sub) or number of subscribers (pub). */
  index: number;
  subscribers?: number;
  /** Publisher: most messages ahead of the slowest subscriber. */
  window?: number;
  /** Publisher: messages per second (latency runs); undefined: as fast as possible. */
  rate?: number;
  /** Subscriber: keep each message's delay (latency runs). */
  latency?: boolean;
  /** Suite's time origin, so every thread stamps on one clock. */
  origin: number;
  /** dist: dial in TLS, trusting this CA (PEM); the tls suite's. */
  tlsCa?: string;
  /**
   * The value published (see SHAPES); default a string of `payload` bytes.
   * NATS sends the same value's JSON text (its payload is bytes).
   */
  shape?: Shape;
  /**
   * dist JSON publishers: "foreign" writes each publish as Python's
   * json.dumps would from a dict built in another order
   * (`{"method": "broker.publish", "params": {"value": V, "topic": "T",
   * "retain": false}}`: spaces after `:` and `,`, the value first), what the
   * broker reads member by member rather than by its canonical layout.
   */
  layout?: "foreign";
}

/** Values applications publish, each about 128 bytes as JSON. */
export const SHAPES = {
  object: {
    id: 18223,
    name: "sensor-12",
    ok: true,
    temp: 21.5,
    unit: "C",
    site: "lyon-3",
    tags: ["a", "b"],
    at: "2026-12-04T20:00:00Z",
  },
  nested: {
    a: { b: [1, 2, { c: [true, null, 3.25] }] },
    d: [[1, 2], [3, [4, [5]]]],
    e: { f: { g: { h: "deep" } } },
    i: [{ j: 1 }, { k: [false] }],
  },
  unicode: {
    text: "héllo wörld ✓ 日本語 😀",
    "clé": 'naïve café "q" \\ \n',
    n: -7,
    more: "ünïcödé ∑ ≠ ∞",
  },
};
export type Shape = keyof typeof SHAPES | "string" | "mixed";

/** How many values of its shape a publisher sends in turn (see shapeValues). */
const VALUES_IN_TURN = 256;

/**
 * The values a publisher of `shape` sends in turn, differing from one to the
 * next as an application's readings do (not one value over and over, which
 * no broker should be measured on): a counter, a reading that drifts by a
 * tenth (`21.5`, `21.6`, then `21.7` or `21.5`, and `22` when it reaches
 * it), a clock that ticks; the nested and non-ASCII shapes' small numbers
 * change; a string carries a sequence number at its end.
 */
export function shapeValues(shape: Shape | undefined, payload: number): unknown[] {
  let seed = 17;
  const rand = () => (seed = (seed * 48271) % 2147483647) / 2147483647;
  const digit = () => Math.floor(rand() * 10);
  let temp = 21.5;
  const out: unknown[] = [];
  for (let i = 0; i < VALUES_IN_TURN; i++) {
    temp = Math.round(temp * 10 + (rand() < 0.5 ? -1 : 1)) / 10;
    if (shape === undefined || shape === "string") {
      const n = String(1_000_000 + i);
      out.push("x".repeat(Math.max(0, payload - n.length)) + n);
    } else if (shape === "object") {
      const at = new Date(Date.UTC(2026, 11, 4, 20, 0, i)).toISOString().replace(".000", "");
      out.push({ ...SHAPES.object, id: 18223 + i, temp, at });
    } else if (shape === "nested") {
      out.push({
        a: { b: [digit(), digit(), { c: [true, null, Number(`${1 + (i % 9)}.${digit()}5`)] }] },
        d: [[digit(), digit()], [digit(), [digit(), [digit()]]]],
        e: { f: { g: { h: "deep" } } },
        i: [{ j: digit() }, { k: [false] }],
      });
    } else if (shape === "mixed") {
      // A layout of its own every time (lengths, members, array sizes): what
      // a memo of the last frames never matches, so its miss is measured too.
      const value: Record<string, unknown> = {
        id: i,
        name: `device-${"x".repeat(i % 7)}${i}`,
        temp,
        tags: Array.from({ length: 1 + (i % 4) }, (_, k) => `t${k * i}`),
      };
      if (i % 2 === 0) value.note = "é".repeat(i % 5) + " ok";
      if (i % 3 === 0) value.extra = { depth: [i % 11, { n: null }] };
      out.push(value);
    } else {
      out.push({ ...SHAPES.unicode, n: -1 - (i % 9) });
    }
  }
  return out;
}

/** JSON text as Python's json.dumps writes it: `", "` and `": "` between tokens. */
function pythonJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(pythonJson).join(", ")}]`;
  if (typeof value === "object" && value !== null) {
    const members = Object.entries(value).map(([k, v]) => `${JSON.stringify(k)}: ${pythonJson(v)}`);
    return `{${members.join(", ")}}`;
  }
  return JSON.stringify(value);
}

/** A publish laid out by another encoder (see WorkerTask.layout). */
export function foreignPublish(topic: string, value: unknown): string {
  return pythonJson({ method: "broker.publish", params: { value, topic, retain: false } });
}

export type WorkerReport =
  | { kind: "ready" }
  | { kind: "done"; received?: number; delays?: Float64Array; error?: string };

const post = (msg: WorkerReport) => (self as unknown as Worker).postMessage(msg);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** Milliseconds on the suite's clock. */
const now = (origin: number) => performance.timeOrigin + performance.now() - origin;

function stamped(task: WorkerTask, t: number): string {
  // A fixed-width send time, padded to the payload size.
  const stamp = t.toFixed(3).padStart(16, "0");
  return stamp + "x".repeat(Math.max(0, task.payload - stamp.length));
}

// ---- dist ----

/** Deliveries read as bytes on a JSON connection (wire/pubsub_json.ts), as the library reads them. */
function deliveryFrames(onDelivery: (d: RawDelivery) => void): RawFrameHandler {
  const topics = new TopicCache();
  return {
    accepts: (frame) => mayStartWith(frame, DELIVERY_PREFIX),
    handle: (frame, peer) => {
      if (peer.codec.name !== "json") return false;
      const delivery = readDelivery(frame, topics);
      if (delivery === undefined) return false;
      onDelivery(delivery);
      return true;
    },
  };
}

/**
 * A dist connection. A subscriber's `onMessage` gets each value's first 16
 * characters (the send time), read from the raw delivery when it comes
 * through the fast path, as the `dist consumer` reads it.
 */
async function distPeer(task: WorkerTask, onMessage?: (stamp: () => string) => void) {
  const decoder = new TextDecoder();
  return await dial({ host: "127.0.0.1", port: task.port }, {
    role: "bench",
    name: `bench-${task.role}-${task.index}`,
    codec: codecByName(task.codec ?? "json"),
    heartbeatMs: 5000,
    tls: task.tlsCa === undefined ? undefined : { ca: task.tlsCa },
    rawFrames: onMessage
      ? deliveryFrames((d) => onMessage(() => decoder.decode(d.value.subarray(1, 17))))
      : undefined,
    onNotification: onMessage
      ? (method, params) => {
        if (method !== "broker.message") return;
        onMessage(() => (params as { value: string }).value.slice(0, 16));
      }
      : undefined,
  });
}

async function distSub(task: WorkerTask, counters: Int32Array): Promise<void> {
  let n = 0;
  const delays = task.latency ? new Float64Array(task.count) : undefined;
  let done!: () => void;
  const finished = new Promise<void>((r) => done = r);
  const peer: Peer = await distPeer(task, (stamp) => {
    if (delays !== undefined && n < task.count) {
      delays[n] = now(task.origin) - Number(stamp());
    }
    n++;
    if ((n & 255) === 0 || n >= task.count) Atomics.store(counters, task.index, n);
    if (n === task.count) done();
  });
  await peer.call("broker.subscribe", { topic: task.topic });
  post({ kind: "ready" });
  await finished;
  post({ kind: "done", received: n, delays });
  peer.close();
}

async function distPub(task: WorkerTask, counters: Int32Array): Promise<void> {
  const peer = await distPeer(task);
  const conn = peer.conn;
  const frameOf = (value: unknown) => {
    const out = new OutBuffer(256);
    if (task.layout === "foreign" && peer.codec.name === "json") {
      out.writeFrame(new TextEncoder().encode(foreignPublish(task.topic, value)));
    } else {
      peer.codec.writeFrame(out, {
        method: "broker.publish",
        params: { topic: task.topic, value, retain: false },
      }, conn.maxFrame);
    }
    return out.bytes.slice(0, out.length);
  };
  const frames = shapeValues(task.shape, task.payload).map(frameOf);
  let next = 0;
  await publishLoop(task, counters, (stampNow) => {
    conn.sendRaw(
      stampNow ? frameOf(stamped(task, now(task.origin))) : frames[next++ % frames.length],
    );
  }, async () => {
    if (conn.pendingBytes > 512 * 1024) await conn.drained(128 * 1024);
  });
  await peer.call("sys.ping");
  post({ kind: "done" });
  peer.close();
}

// ---- NATS ----

async function natsSub(task: WorkerTask, counters: Int32Array): Promise<void> {
  const nc: NatsConnection = await natsConnect({ port: task.port, noEcho: true });
  let n = 0;
  const delays = task.latency ? new Float64Array(task.count) : undefined;
  const decoder = new TextDecoder();
  let done!: () => void;
  const finished = new Promise<void>((r) => done = r);
  nc.subscribe(task.topic, {
    callback: (_err, msg) => {
      if (delays !== undefined && n < task.count) {
        delays[n] = now(task.origin) - Number(decoder.decode(msg.data.subarray(0, 16)));
      }
      n++;
      if ((n & 255) === 0 || n >= task.count) Atomics.store(counters, task.index, n);
      if (n === task.count) done();
    },
  });
  await nc.flush();
  post({ kind: "ready" });
  await finished;
  post({ kind: "done", received: n, delays });
  await nc.close();
}

async function natsPub(task: WorkerTask, counters: Int32Array): Promise<void> {
  const nc: NatsConnection = await natsConnect({ port: task.port });
  const encoder = new TextEncoder();
  const texts = shapeValues(task.shape, task.payload).map((v) =>
    encoder.encode(typeof v === "string" ? v : JSON.stringify(v))
  );
  let next = 0;
  await publishLoop(task, counters, (stampNow) => {
    nc.publish(
      task.topic,
      stampNow ? encoder.encode(stamped(task, now(task.origin))) : texts[next++ % texts.length],
    );
  }, async () => {});
  await nc.flush();
  post({ kind: "done" });
  await nc.close();
}

// ---- the publishing loop both share ----

/**
 * Publishes `task.count` messages: as fast as the window allows, or on a
 * fixed schedule at `task.rate` (then each value carries its send time).
 */
async function publishLoop(
  task: WorkerTask,
  counters: Int32Array,
  publish: (stamped: boolean) => void,
  drain: () => Promise<void>,
): Promise<void> {
  const subs = task.subscribers ?? 1;
  const window = task.window ?? 20_000;
  const slowest = () => {
    let min = Infinity;
    for (let i = 0; i < subs; i++) min = Math.min(min, Atomics.load(counters, i));
    return min;
  };
  const t0 = performance.now();
  let sent = 0;
  while (sent < task.count) {
    if (task.rate !== undefined) {
      const due = Math.min(task.count, Math.floor(((performance.now() - t0) * task.rate) / 1000));
      if (sent >= due) {
        await sleep(1);
        continue;
      }
      while (sent < due) {
        publish(true);
        sent++;
      }
      await drain();
      continue;
    }
    const batchEnd = Math.min(task.count, sent + 256);
    while (sent < batchEnd) {
      publish(false);
      sent++;
    }
    await drain();
    while (sent - slowest() > window) await sleep(1);
  }
}

(self as unknown as Worker).onmessage = async (e: MessageEvent<WorkerTask>) => {
  const task = e.data;
  const counters = new Int32Array(task.counters);
  try {
    if (task.system === "dist") {
      await (task.role === "sub" ? distSub(task, counters) : distPub(task, counters));
    } else {
      await (task.role === "sub" ? natsSub(task, counters) : natsPub(task, counters));
    }
  } catch (err) {
    post({ kind: "done", error: err instanceof Error ? err.message : String(err) });
  }
};
