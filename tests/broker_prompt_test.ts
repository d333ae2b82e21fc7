/**
 * A subscriber that keeps up is served promptly while a publish fans out to
 * thousands of subscriptions that never read: its delivery does not wait
 * behind theirs (issue 17). A real broker process; the well-behaved
 * subscriber subscribes after the flood, so it is the last of the fan-out's
 * targets. Bounded: fixed counts, every wait with a deadline.
 */
import assert from "node:assert/strict";
import { startDist } from "./helpers/dist.ts";
import { type Flood, flood } from "./helpers/flood.ts";
import { BrokerClient } from "./helpers/broker.ts";

const MIB = 1024 * 1024;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[s.length >> 1];
}

Deno.test("broker fan-out: a subscriber that keeps up gets each publish at once, not behind 20,000 never-readers", async () => {
  const b = await startDist([
    "broker",
    "--port=0",
    `--max-pending=${2 * MIB}`,
    "--write-timeout=120000", // the write timeout is not what is tested here
  ]);
  let f: Flood | undefined;
  let good: BrokerClient | undefined;
  let pub: BrokerClient | undefined;
  try {
    f = await flood(b.port, 8, 2500);
    assert(f.refused === 0, `${f.refused} subscriptions refused`);
    good = await BrokerClient.connect(b.port);
    await good.subscribe("/", {});
    // When each delivery arrives, exactly (the client records them in this array).
    const arrived: number[] = [];
    const deliveries = good.deliveries;
    const push = deliveries.push.bind(deliveries);
    deliveries.push = (...items) => {
      for (const _ of items) arrived.push(performance.now());
      return push(...items);
    };
    pub = await BrokerClient.connect(b.port);
    const count = 40;
    // When the broker had read each publish: its confirmation is sent as it is read.
    const read: number[] = [];
    const t0 = performance.now();
    for (let i = 0; i < count; i++) {
      await pub.confirm(`/t/${i % 5}`, { n: i, text: "x".repeat(60), ok: true }, false);
      read.push(performance.now());
    }
    const deadline = Date.now() + 60_000;
    while (good.deliveries.length < count && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 5));
    }
    // Each publish is 20,000 deliveries to never-readers, made over several turns; the
    // publisher is held back while they wait, so publishes come about one fan-out apart.
    const perPublish = (performance.now() - t0) / count;
    const got = good.deliveries.map((d) => (d.value as { n: number }).n);
    assert(
      got.length === count && got.every((n, i) => n === i),
      `the well-behaved subscriber got ${got.length} of ${count} in order`,
    );
    const stats = await pub.stats();
    assert((stats.dropped as number) > 0, "the never-reading subscriptions dropped");
    // Behind the confirmation: about zero when it is served in the publish's first turn; a
    // whole fan-out and what waited before it (several times perPublish) when it waits its
    // turn behind 20,000 never-readers.
    const behind = arrived.map((t, i) => t - read[i]);
    const late = median(behind);
    assert(
      late < 0.25 * perPublish,
      `the well-behaved subscriber's deliveries came a median ${late.toFixed(1)} ms after ` +
        `the publish was read, with ${perPublish.toFixed(1)} ms per publish (` +
        behind.map((x) => x.toFixed(0)).join(" ") + ")",
    );
  } finally {
    f?.stop();
    good?.close();
    pub?.close();
    await b.stop();
  }
});
