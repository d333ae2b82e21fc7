/**
 * A subscription's buffer is bounded by bytes as well as by messages
 * (clients/subscription.ts `bufferBytes`): with large values, reading
 * pauses once that many bytes wait, long before `buffer` messages, and
 * resumes as the iterator takes them, nothing lost.
 */
import assert from "node:assert/strict";
import { connect } from "../clients/mod.ts";
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
