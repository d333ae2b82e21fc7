/**
 * The client library's subscriptions across a reconnection (clients/pubsub.ts
 * #resubscribe) against a real broker run in this process: a re-subscribe the
 * broker refuses ends only that subscription, with the broker's error; the
 * connection and the other subscriptions go on.
 */
import assert from "node:assert/strict";
import { connect, DistError, type Subscription } from "../clients/mod.ts";
import { startBroker } from "./helpers/broker.ts";
import { waitFor, within } from "./helpers/raw.ts";
import { freePort } from "./helpers/dist.ts";

/** The outcome of iterating `sub` to its end: the values, then "done" or the error. */
function iterate(sub: Subscription, into: unknown[]): Promise<"done" | DistError> {
  return (async () => {
    for await (const m of sub) into.push(m.value);
    return "done" as const;
  })().catch((err) => err as DistError);
}

Deno.test("a re-subscribe the broker refuses ends that subscription only: the connection and the others go on", async () => {
  const port = freePort(); // listened on again after the restart: below the ephemeral range
  let b = await startBroker({ port });
  const conn = await connect(b.address, { timeout: 2000 });
  try {
    const a = await conn.subscribe("/a");
    const bSub = await conn.subscribe("/b");
    const gotA: unknown[] = [];
    const gotB: unknown[] = [];
    const endA = iterate(a, gotA);
    const endB = iterate(bSub, gotB);
    await b.stop();
    // Back with room for one subscription: /a is made again, /b refused.
    b = await startBroker({ port, maxSubscriptions: 1 });
    await waitFor(() => conn.connected, 8000, "the redial");
    const outcome = await within(endB, 5000, "the refused subscription's end");
    assert.ok(outcome instanceof DistError, `ended with ${String(outcome)}`);
    assert.equal(outcome.code, "OVERLOADED");
    // Requests go on, and the subscription that was made again delivers.
    const answer = await conn.publish("/a/x", "after", { confirm: true, retain: false });
    assert.equal(answer?.deliveries, 1);
    await waitFor(() => gotA.length === 1, 5000, "the delivery to /a");
    assert.deepEqual(gotA, ["after"]);
    assert.ok(conn.connected);
    await a.unsubscribe();
    assert.equal(await within(endA, 5000, "the end of /a"), "done");
  } finally {
    conn.close();
    await b.stop();
  }
});
