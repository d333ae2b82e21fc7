/**
 * A subscriber that reads a trickle is cut by its policy, not kept (issue
 * 17, "memory bounds that hold"): a connection holding 500 subscriptions to
 * `/` reads 16 bytes every 200 ms while each publish queues 500 deliveries
 * for it, far past its `--max-pending`. Under `disconnect` it is cut as soon
 * as its pending bytes pass the budget; under `drop-oldest` its queue stays
 * within the budget (the oldest dropped) and the wire cuts it once it has
 * taken less than 64 KiB in a write timeout. Meanwhile a subscriber that
 * reads freely gets every publish, in order, and the trickler's connection
 * never counts past its budget.
 */
import assert from "node:assert/strict";
import { BrokerClient, statsUntil, withBroker } from "./helpers/broker.ts";
import { jsonFrame, rawHandshake, RawReader, sleep, writeAll } from "./helpers/raw.ts";

const SUBS = 500;
const MAX_PENDING = 256 * 1024;
const WRITE_TIMEOUT = 1000;

/** A raw connection holding SUBS subscriptions to `/` under `policy`, its answers read. */
async function trickler(port: number, policy: string): Promise<Deno.Conn> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    const reader = new RawReader(conn);
    await rawHandshake(conn, reader);
    const frames = Array.from(
      { length: SUBS },
      (_, i) =>
        jsonFrame({ id: i + 1, method: "broker.subscribe", params: { topic: "/", policy } }),
    );
    for (const f of frames) await writeAll(conn, f);
    for (let answered = 0; answered < SUBS;) {
      const m = await reader.json(10_000);
      assert.ok(m !== null, "closed while subscribing");
      if (m.id !== undefined) {
        assert.ok(m.result !== undefined, JSON.stringify(m.error));
        answered++;
      }
    }
    return conn;
  } catch (err) {
    conn.close();
    throw err;
  }
}

for (const policy of ["disconnect", "drop-oldest"]) {
  Deno.test(`broker: a ${policy} subscriber of ${SUBS} subscriptions reading 16 bytes every 200 ms is cut off, another gets everything`, async () => {
    await withBroker(async (b) => {
      const conn = await trickler(b.port, policy);
      const good = await BrokerClient.connect(b.port, "json", "good");
      const pub = await BrokerClient.connect(b.port, "json", "pub");
      // A few bytes at a time, a few times a second, until the broker closes it.
      const trickle = (async () => {
        const buf = new Uint8Array(16);
        for (;;) {
          const n = await conn.read(buf).catch(() => null);
          if (n === null) return;
          await sleep(200);
        }
      })();
      try {
        await good.subscribe("/f");
        const pad = "p".repeat(200);
        const started = performance.now();
        let sent = 0;
        let cutAt = -1;
        let most = 0;
        // Publish until it is cut off (at most 20 s), watching what its connection counts.
        while (performance.now() - started < 20_000) {
          for (let i = 0; i < 10; i++) pub.publish("/f/x", { n: sent++, pad }, false);
          await pub.peer.conn.drained(0);
          await sleep(20);
          const stats = await pub.stats();
          most = Math.max(most, stats.queued_bytes as number);
          if (stats.subscriptions === 1) {
            cutAt = performance.now() - started;
            assert.equal(stats.slow_consumers, 1, "the cut counts as a slow consumer");
            break;
          }
        }
        assert.ok(cutAt >= 0, `still subscribed after 20 s, ${sent} publishes`);
        // Counted queues stay within the connection's budget (the kernel's buffers are not counted).
        assert.ok(most <= MAX_PENDING, `${most} bytes queued (max-pending ${MAX_PENDING})`);
        if (policy === "disconnect") {
          // Its policy, not the write timeout, cut it.
          assert.ok(cutAt < 4 * WRITE_TIMEOUT, `cut after ${Math.round(cutAt)} ms`);
        }
        const last = await pub.confirm("/f/x", { n: sent, pad: "" }, false);
        assert.equal(last.deliveries, 1, "only the good subscriber is left");
        const got = await good.received(sent + 1, 10_000);
        assert.deepEqual(
          got.map((d) => (d.value as { n: number }).n),
          Array.from({ length: sent + 1 }, (_, i) => i),
          "every publish, in order",
        );
        console.log(
          `${policy}: cut after ${Math.round(cutAt)} ms, ${sent} publishes (${
            sent * SUBS
          } deliveries for it), at most ${most} bytes queued`,
        );
        // The broker closes its side once its last bytes had their time (the write timeout):
        // the kernel still holds what it sent before the close, so the trickler sees it late.
        await statsUntil(pub, (s) => s.connections === 2, 5 * WRITE_TIMEOUT);
      } finally {
        conn.close();
        await trickle;
        good.close();
        pub.close();
      }
    }, { maxPending: MAX_PENDING, writeTimeout: WRITE_TIMEOUT });
  });
}
