/**
 * A raw-socket MQTT 3.1.1 load generator for the mqtt suite (bench/mqtt.ts):
 * 1 publisher → N subscribers at QoS 0 or 1, in this thread.
 *
 * Why not MQTT.js for throughput: against a broker that costs nothing it
 * peaks near 43k msgs/s at QoS 0 and 14k at QoS 1 (16 and 40 µs of client
 * CPU per message), below Mosquitto itself, so it would measure the client.
 * This one writes pre-encoded PUBLISH frames 64 KiB at a time (packet ids
 * patched in place), its subscribers only frame packets and answer a read's
 * PUBACKs in one write, about 1 µs of client CPU per message: the broker is
 * the bottleneck. The publisher stays at most `ahead` messages ahead of the
 * slowest subscriber (so neither broker's queue bound is reached: Mosquitto
 * drops beyond 1,000 queued per client), and every message is counted where
 * it arrives. All clients share this thread: worker threads cost 2–3× the
 * client CPU on this 2-core machine (context switches).
 */
import { writeAll } from "../tests/helpers/raw.ts";
import { str, varint } from "../tests/helpers/mqtt_bytes.ts";

/** A 3.1.1 CONNECT (clean session unless `clean` is false: a persistent session). */
export function connectPacket(clientId: string, keepalive = 60, clean = true): Uint8Array {
  const flags = clean ? 2 : 0;
  const body = [...str("MQTT"), 4, flags, keepalive >> 8, keepalive & 0xff, ...str(clientId)];
  return Uint8Array.from([0x10, ...varint(body.length), ...body]);
}

export function subscribePacket(filter: string, qos: number, id = 1): Uint8Array {
  const body = [id >> 8, id & 0xff, ...str(filter), qos];
  return Uint8Array.from([0x82, ...varint(body.length), ...body]);
}

function publishPacket(topic: string, payload: Uint8Array, qos: number): Uint8Array {
  const body = [...str(topic), ...(qos > 0 ? [0, 1] : []), ...payload];
  return Uint8Array.from([0x30 | (qos << 1), ...varint(body.length), ...body]);
}

/** Opens a connection and waits for the packet of `type` answering `packets`. */
export async function handshake(port: number, packets: Uint8Array[]): Promise<Deno.Conn> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  conn.setNoDelay(true);
  const buf = new Uint8Array(256);
  for (const p of packets) {
    await writeAll(conn, p);
    // CONNACK and SUBACK come alone at this stage.
    const n = await conn.read(buf);
    const want = p[0] === 0x10 ? 0x20 : 0x90;
    if (n === null || buf[0] !== want) {
      conn.close();
      throw new Error(`MQTT handshake: got ${n === null ? "EOF" : `0x${buf[0].toString(16)}`}`);
    }
  }
  return conn;
}

export interface LoadOptions {
  port: number;
  subs: number;
  qos: number;
  count: number;
  payload: number;
  /** Most messages the publisher runs ahead of the slowest subscriber. */
  ahead: number;
  /** A run with no progress for this long has lost messages. */
  stallMs: number;
  /** Subscribers with persistent sessions (clean session 0: QoS 1 deliveries kept until PUBACK). */
  persistent?: boolean;
}

export interface LoadResult {
  seconds: number;
  /** Messages per second every subscriber received (the slowest's count). */
  msgsPerS: number;
  deliveriesPerS: number;
  received: number[];
}

/** One run: resolves once every subscriber has every message; throws on a stall. */
export async function loadRun(o: LoadOptions): Promise<LoadResult> {
  const topic = `bench/${crypto.randomUUID().slice(0, 8)}`;
  const received = new Array<number>(o.subs).fill(0);
  const conns: Deno.Conn[] = [];
  let wake: (() => void) | undefined;
  const progress = () => {
    const w = wake;
    wake = undefined;
    w?.();
  };
  let failed: Error | undefined;
  try {
    for (let i = 0; i < o.subs; i++) {
      const tag = `sub-${i}-${crypto.randomUUID().slice(0, 8)}`;
      const c = await handshake(o.port, [
        connectPacket(tag, 60, o.persistent !== true),
        subscribePacket(topic, o.qos),
      ]);
      conns.push(c);
      subscriber(c, o.qos, (n) => {
        received[i] += n;
        progress();
      }).catch((err) => failed ??= err);
    }
    const pub = await handshake(o.port, [connectPacket(`pub-${crypto.randomUUID().slice(0, 8)}`)]);
    conns.push(pub);
    let acked = 0;
    if (o.qos > 0) {
      countAcks(pub, (n) => {
        acked += n;
        progress();
      }).catch((err) => failed ??= err);
    }
    const one = publishPacket(topic, new Uint8Array(o.payload).fill(0x61), o.qos);
    const idAt = one.length - o.payload - 2;
    const perBatch = Math.max(1, Math.floor(65536 / one.length));
    const batch = new Uint8Array(one.length * perBatch);
    for (let i = 0; i < perBatch; i++) batch.set(one, i * one.length);
    const t0 = performance.now();
    let sent = 0;
    let id = 0;
    let lastMove = t0;
    let lastTotal = -1;
    while (Math.min(...received) < o.count) {
      if (failed) throw failed;
      const total = received.reduce((a, b) => a + b, 0);
      if (total !== lastTotal) [lastTotal, lastMove] = [total, performance.now()];
      else if (performance.now() - lastMove > o.stallMs) {
        throw new Error(`no progress for ${o.stallMs} ms: received ${received.join(", ")}`);
      }
      let room = Math.min(o.count - sent, Math.min(...received) + o.ahead - sent, perBatch);
      if (o.qos > 0) room = Math.min(room, acked + o.ahead - sent);
      const want = Math.min(o.count - sent, Math.max(1, Math.min(perBatch, o.ahead >> 2)));
      if (room < want || room <= 0) {
        // Wait for a subscriber's (or the publisher's acks') progress, or poll the stall clock.
        await new Promise<void>((r) => {
          wake = r;
          setTimeout(r, 100);
        });
        continue;
      }
      if (o.qos > 0) {
        for (let i = 0; i < room; i++) {
          id = id === 65535 ? 1 : id + 1;
          batch[i * one.length + idAt] = id >> 8;
          batch[i * one.length + idAt + 1] = id & 0xff;
        }
      }
      await writeAll(pub, batch.subarray(0, room * one.length));
      sent += room;
    }
    const seconds = (performance.now() - t0) / 1000;
    return {
      seconds,
      msgsPerS: o.count / seconds,
      deliveriesPerS: (o.count * o.subs) / seconds,
      received,
    };
  } finally {
    for (const c of conns) {
      try {
        c.close();
      } catch {
        // Closed by the broker.
      }
    }
  }
}

/** Counts PUBLISHes as they arrive and answers a read's QoS 1 ones with one write of PUBACKs. */
async function subscriber(conn: Deno.Conn, qos: number, got: (n: number) => void): Promise<void> {
  const buf = new Uint8Array(256 * 1024);
  const acks = new Uint8Array(buf.length);
  let have = 0;
  try {
    while (true) {
      const n = await conn.read(buf.subarray(have));
      if (n === null) return;
      have += n;
      let at = 0;
      let na = 0;
      let count = 0;
      while (at + 2 <= have) {
        let length = 0;
        let mul = 1;
        let i = at + 1;
        let whole = false;
        for (let k = 0; k < 4 && i < have; k++) {
          const b = buf[i++];
          length += (b & 0x7f) * mul;
          mul *= 128;
          if ((b & 0x80) === 0) {
            whole = true;
            break;
          }
        }
        if (!whole || i + length > have) break;
        const first = buf[at];
        if (first >> 4 === 3) {
          count++;
          if (qos > 0 && (first & 6) !== 0) {
            const p = i + 2 + ((buf[i] << 8) | buf[i + 1]);
            acks[na++] = 0x40;
            acks[na++] = 2;
            acks[na++] = buf[p];
            acks[na++] = buf[p + 1];
          }
        }
        at = i + length;
      }
      if (at > 0) {
        buf.copyWithin(0, at, have);
        have -= at;
      }
      if (na > 0) await writeAll(conn, acks.subarray(0, na));
      if (count > 0) got(count);
    }
  } catch (err) {
    if (!(err instanceof Deno.errors.BadResource)) throw err;
  }
}

/** Counts the PUBACKs the publisher gets (4 bytes each, nothing else comes). */
async function countAcks(conn: Deno.Conn, got: (n: number) => void): Promise<void> {
  const buf = new Uint8Array(64 * 1024);
  let have = 0;
  try {
    while (true) {
      const n = await conn.read(buf.subarray(have));
      if (n === null) return;
      have += n;
      let at = 0;
      let count = 0;
      while (at + 2 <= have && at + 2 + buf[at + 1] <= have) {
        if (buf[at] >> 4 === 4) count++;
        at += 2 + buf[at + 1];
      }
      buf.copyWithin(0, at, have);
      have -= at;
      if (count > 0) got(count);
    }
  } catch (err) {
    if (!(err instanceof Deno.errors.BadResource)) throw err;
  }
}
