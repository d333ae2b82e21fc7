/**
 * A subscription's buffer is bounded by bytes as well as by messages
 * (clients/subscription.ts `bufferBytes`): with large values, reading
 * pauses once that many bytes wait, long before `buffer` messages, and
 * resumes as the iterator takes them, nothing lost.
 */
import assert from "node:assert/strict";
import { connect } from "../clients/mod.ts";
import { DistError, listen } from "../wire/mod.ts";
import { startBroker } from "./helpers/broker.ts";
import { waitFor } from "./helpers/raw.ts";

const VALUE = "x".repeat(64 * 1024);
const COUNT = 50;

for (const codec of ["json", "msgpack"] as const) {
  Deno.test(`subscribe() bufferBytes (${codec}): large values pause reading at the byte bound, then all arrive in order`, async () => {
    const b = await startBroker();
    const sink = await connect(b.address, { codec });
    const pub = await connect(b.address);
    try {
      const sub = await sink.subscribe("/big", { bufferBytes: 256 * 1024 });
      for (let i = 0; i < COUNT; i++) {
        await pub.publish("/big", { i, v: VALUE }, { retain: false, confirm: true });
      }
      await waitFor(() => sub.waiting >= 4, 5000, "messages waiting");
      await new Promise((r) => setTimeout(r, 300)); // time to read more, were it not paused
      // Paused at 256 KiB: what one read brought past it at most, not 50 messages.
      assert.ok(sub.waiting <= 8, `${sub.waiting} messages waiting`);
      assert.ok(sub.waitingBytes <= 256 * 1024 + 4 * VALUE.length, `${sub.waitingBytes} bytes`);
      const seen: number[] = [];
      for await (const m of sub) {
        seen.push((m.value as { i: number }).i);
        if (seen.length === COUNT) break;
      }
      assert.deepEqual(seen, Array.from({ length: COUNT }, (_, i) => i));
    } finally {
      sink.close();
      pub.close();
      await b.stop();
    }
  });
}

Deno.test("deliveries that come before their subscribe's answer are kept up to the buffer's 8 MiB, not by count alone (hostile34 Z4b)", async () => {
  // A hostile broker: 12 deliveries of 1 MB for the sid it is about to
  // answer, before the answer. Before, up to 10,000 were kept whatever their
  // size (3.6 GiB from 1,849 × 1 MB in the reviewer's run).
  const big = "x".repeat(1_000_000);
  const fake = listen({
    host: "127.0.0.1",
    port: 0,
    role: "broker",
    name: "hostile",
    onRequest: (method, _params, peer) => {
      if (method === "sys.ping") return { pong: true };
      if (method !== "broker.subscribe") throw new DistError("NOT_FOUND", method);
      for (let i = 0; i < 12; i++) {
        peer.notify("broker.message", { topic: "/t", value: big, sid: 1 });
      }
      return { sid: 1, topic: "/t", topics: [], topic_count: 0 };
    },
  });
  const conn = await connect(`127.0.0.1:${fake.addr.port}`);
  try {
    const sub = await conn.subscribe("/t");
    const got: unknown[] = [];
    const reading = (async () => {
      for await (const m of sub) got.push(m.value);
    })();
    await new Promise((r) => setTimeout(r, 500));
    assert.ok(got.length >= 1 && got.length <= 8, `${got.length} of 12 kept`);
    assert.ok(got.every((v) => v === big));
    sub.unsubscribe().catch(() => {});
    conn.close();
    await reading.catch(() => {});
  } finally {
    conn.close();
    await fake.close(0);
  }
});
