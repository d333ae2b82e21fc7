/**
 * A delivery larger than the subscriber's frame limit (told at hello as
 * `max_frame`): the broker skips it, counts it and tells the subscriber
 * (`broker.undeliverable`), and the subscriber stays connected and gets
 * what follows. Before, a retained value past the client's limit cut it off
 * on every re-subscribe, for ever.
 */
import assert from "node:assert/strict";
import { connect, type Subscription } from "../clients/mod.ts";
import { startBroker } from "./helpers/broker.ts";
import { within } from "./helpers/raw.ts";

const MIB = 1024 * 1024;

async function next(sub: Subscription): Promise<unknown> {
  const r = await within(sub.next(), 5000, "a message");
  assert.ok(!r.done);
  return r.value.value;
}

Deno.test("a delivery past the subscriber's frame limit is skipped and told; the subscriber stays connected", async () => {
  const b = await startBroker({ maxFrame: 8 * MIB });
  const pub = await connect(b.address, { wire: { maxFrame: 8 * MIB } });
  const app = await connect(b.address); // the default limit, 1 MiB
  try {
    const big = "x".repeat(3_000_000);
    await pub.publish("/t", big, { confirm: true }); // retained
    const notices: unknown[] = [];
    app.on("broker.undeliverable", (n) => notices.push(n));
    const sub = await app.subscribe("/t");
    await pub.publish("/t", "small", { confirm: true, retain: false });
    assert.equal(await next(sub), "small");
    // The same live: skipped too, and a larger subscriber gets it.
    const roomy = await connect(b.address, { wire: { maxFrame: 8 * MIB } });
    try {
      const whole = await roomy.subscribe("/t");
      assert.equal((await next(whole) as string).length, big.length, "the retained value");
      await pub.publish("/t", big, { confirm: true, retain: false });
      await pub.publish("/t", "after", { confirm: true, retain: false });
      assert.equal(await next(sub), "after");
      assert.equal((await next(whole) as string).length, big.length, "the live value");
    } finally {
      roomy.close();
    }
    assert.ok(app.connected);
    assert.equal(sub.undeliverable, 2);
    assert.deepEqual(
      notices.map((n) => (n as { limit: number; sid: number }).limit),
      [MIB, MIB],
    );
    const stats = await app.request("sys.stats") as { undeliverable: number };
    assert.equal(stats.undeliverable, 2);
  } finally {
    app.close();
    pub.close();
    await b.stop();
  }
});
