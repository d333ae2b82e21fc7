/**
 * The minute a session read back from disk is spared by the away share
 * (hostile review 40b U2) starts once the journal is read back, not when
 * its row is: hostile review 41b X5 measured a restore of 250,000 rows
 * that spent 30 s of it before the MQTT port opened.
 */
import assert from "node:assert/strict";
import { AwaySessions } from "../roles/broker/mqtt/away.ts";
import type { MqttSession } from "../roles/broker/mqtt/session.ts";

/** What AwaySessions reads of a session: 1,000 bytes queued, nothing else. */
function session(): MqttSession {
  return {
    clientId: "c",
    counted: 0,
    inflight: { keptBytes: 0 },
    subs: [{ sourceBytes: 0, queueMemory: 1000 }],
  } as unknown as MqttSession;
}

Deno.test("mqtt away: a session read back is spared for a minute from the end of the journal's read-back", async () => {
  const away = new AwaySessions();
  away.readBack(session(), "1.2.3.4");
  away.leave(session(), "5.6.7.8"); // a client that left after the start: never spared
  await Promise.resolve(); // what it held read back is taken once its queues are read too
  const [readBack, left] = [...away.values()] as unknown as { spareUntil: number }[];
  // The read-back took longer than its grace.
  readBack.spareUntil = performance.now() - 1;
  const now = performance.now();
  assert.equal((readBack as unknown as { spared(n: number): number }).spared(now), 0);
  away.readBackDone();
  const later = performance.now();
  assert.equal((readBack as unknown as { spared(n: number): number }).spared(later), 1000);
  assert.equal((left as unknown as { spared(n: number): number }).spared(later), 0);
  assert.ok(readBack.spareUntil >= later + 59_000, "a minute from now");
});
