/**
 * Subscribers slower than a flood, under `drop-oldest`, while a publisher
 * sends far past `--max-pending` and their kernel buffers for several write
 * timeouts. One that reads slower than the flood but steadily (64 KB every
 * 10 ms) is kept (its policy drops the oldest), its queue stays within
 * max-pending, and once it reads freely it gets the newest values, in
 * order, ending with the last one. One that reads a trickle (8 KB every
 * 500 ms: less than 64 KiB per write timeout while output waits on it) is
 * cut off as a slow consumer, as is one that takes nothing at all; both
 * are counted.
 */
import assert from "node:assert/strict";
import { BrokerClient, statsUntil, withBroker } from "./helpers/broker.ts";
import { jsonFrame, rawHandshake, RawReader, sleep, writeAll } from "./helpers/raw.ts";
import { captureLogs } from "./helpers/logs.ts";

const decoder = new TextDecoder();

/** A raw subscriber's bytes, read as the test chooses, cut into JSON frames. */
class Trickle {
  readonly conn: Deno.Conn;
  #buf = new Uint8Array(0);
  closed = false;

  constructor(conn: Deno.Conn) {
    this.conn = conn;
  }

  /** Reads at most `n` bytes (one read). */
  async read(n: number): Promise<void> {
    const chunk = new Uint8Array(n);
    const got = await this.conn.read(chunk).catch(() => null);
    if (got === null) {
      this.closed = true;
      return;
    }
    const next = new Uint8Array(this.#buf.length + got);
    next.set(this.#buf);
    next.set(chunk.subarray(0, got), this.#buf.length);
    this.#buf = next;
  }

  /** The complete frames read so far, parsed (taken out of the buffer). */
  frames(): Record<string, unknown>[] {
    const out: Record<string, unknown>[] = [];
    let at = 0;
    const view = new DataView(this.#buf.buffer, this.#buf.byteOffset, this.#buf.byteLength);
    while (at + 4 <= this.#buf.length) {
      const len = view.getUint32(at);
      if (at + 4 + len > this.#buf.length) break;
      out.push(JSON.parse(decoder.decode(this.#buf.subarray(at + 4, at + 4 + len))));
      at += 4 + len;
    }
    this.#buf = this.#buf.slice(at);
    return out;
  }
}

/** A raw connection subscribed to `/f` with drop-oldest, its answer read: it reads nothing more. */
async function dropOldestSubscriber(port: number): Promise<Deno.Conn> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    const reader = new RawReader(conn);
    await rawHandshake(conn, reader);
    await writeAll(
      conn,
      jsonFrame({
        id: 1,
        method: "broker.subscribe",
        params: { topic: "/f", policy: "drop-oldest" },
      }),
    );
    assert.ok((await reader.json())?.result !== undefined);
    return conn;
  } catch (err) {
    conn.close();
    throw err;
  }
}

Deno.test("broker: a subscriber reading slower than a flood under drop-oldest is kept and gets the newest values", async () => {
  const maxPending = 256 * 1024;
  const writeTimeout = 2000;
  await withBroker(async (b) => {
    const conn = await dropOldestSubscriber(b.port);
    const pub = await BrokerClient.connect(b.port);
    try {
      const sub = new Trickle(conn);
      // 64 KB every 10 ms (at most 6.4 MB/s) while 24 MB come: far past max-pending and the socket buffers.
      let flooding = true;
      const trickle = (async () => {
        while (flooding && !sub.closed) {
          await sub.read(64 * 1024);
          await sleep(10);
        }
      })();
      const pad = "p".repeat(8000);
      const count = 3000;
      const started = performance.now();
      for (let n = 0; n < count; n++) {
        pub.publish("/f/x", { n, pad }, false);
        if (n % 100 === 99) await pub.peer.conn.drained(256 * 1024);
      }
      const stats = await statsUntil(pub, (s) => s.messages_in === count, 20_000);
      // Trickle on past several write timeouts, then check it is still there.
      while (performance.now() - started < 2 * writeTimeout) await sleep(50);
      const during = await pub.stats();
      flooding = false;
      await trickle;
      assert.equal(sub.closed, false, "the slower subscriber keeps its connection");
      assert.equal(during.slow_consumers, 0, "not cut off");
      assert.equal(during.subscriptions, 1);
      assert.ok((stats.dropped as number) > 0, "its policy dropped the oldest");
      assert.ok(
        (during.queued_bytes as number) <= maxPending,
        `queued ${during.queued_bytes} bytes (max-pending ${maxPending})`,
      );
      // The last value, published after the flood, reaches it once it reads freely.
      await pub.confirm("/f/x", { n: count, pad: "" }, false);
      const got: number[] = [];
      const deadline = performance.now() + 10_000;
      while (got.at(-1) !== count && performance.now() < deadline && !sub.closed) {
        await sub.read(256 * 1024);
        for (const f of sub.frames()) {
          if (f.method === "broker.message") {
            got.push((f.params as { value: { n: number } }).value.n);
          }
        }
      }
      assert.equal(got.at(-1), count, "the newest value arrived last");
      for (let i = 1; i < got.length; i++) assert.ok(got[i] > got[i - 1], "in publish order");
      assert.ok(got.length < count, `${got.length} of ${count + 1}: the oldest were dropped`);
      const after = await pub.stats();
      assert.equal(after.slow_consumers, 0);
    } finally {
      conn.close();
      pub.close();
    }
  }, { maxPending, writeTimeout });
});

Deno.test("broker: a drop-oldest subscriber that takes nothing for the write timeout is cut off and counted", async () => {
  await withBroker(async (b) => {
    const conn = await dropOldestSubscriber(b.port);
    const pub = await BrokerClient.connect(b.port);
    try {
      // It reads nothing more: the socket buffers fill, then no write takes a byte.
      const pad = "p".repeat(8000);
      for (let n = 0; n < 3000; n++) {
        pub.publish("/f/x", { n, pad }, false);
        if (n % 100 === 99) await pub.peer.conn.drained(256 * 1024);
      }
      const stats = await statsUntil(pub, (s) => s.subscriptions === 0, 10_000);
      assert.equal(stats.slow_consumers, 1, "the wire's cut counts as a slow consumer");
    } finally {
      conn.close();
      pub.close();
    }
  }, { maxPending: 256 * 1024, writeTimeout: 500 });
});

Deno.test("broker: a drop-oldest subscriber reading a trickle (under 64 KiB per write timeout) is cut off and counted", async () => {
  const writeTimeout = 1000;
  const logs = await captureLogs("info");
  await withBroker(async (b) => {
    const conn = await dropOldestSubscriber(b.port);
    const pub = await BrokerClient.connect(b.port);
    let flooding = true;
    try {
      const sub = new Trickle(conn);
      // 8 KB every 500 ms (16 KB/s, 16 KB per write timeout) while the flood fills its buffers.
      const trickle = (async () => {
        while (flooding && !sub.closed) {
          await sub.read(8 * 1024);
          await sleep(500);
        }
      })();
      const pad = "p".repeat(8000);
      const started = performance.now();
      let n = 0;
      let stats = await pub.stats();
      // Publish until it is cut off (at most 20 s): output waits on it all along.
      while (stats.subscriptions !== 0 && performance.now() - started < 20_000) {
        for (let i = 0; i < 100; i++) pub.publish("/f/x", { n: n++, pad }, false);
        await pub.peer.conn.drained(256 * 1024);
        await sleep(20);
        stats = await pub.stats();
      }
      const cutMs = performance.now() - started;
      flooding = false;
      await trickle;
      assert.equal(stats.subscriptions, 0, `still subscribed after ${Math.round(cutMs)} ms`);
      assert.equal(stats.slow_consumers, 1, "the cut counts as a slow consumer");
      assert.match(logs.text(), /slow_consumer: Peer took (no bytes|\d+ bytes in)/);
    } finally {
      flooding = false;
      conn.close();
      pub.close();
    }
  }, { maxPending: 256 * 1024, writeTimeout }).finally(() => logs.stop());
});
