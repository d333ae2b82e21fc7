/**
 * Heartbeats across a stalling process: a broker that gets the CPU only
 * now and then (here: stopped for 2 s, let run for a moment, over and over,
 * as on a machine loaded many times over) still pings a publisher that
 * only sends, in time for the publisher's own liveness (heartbeat × 3 of
 * silence). Its housekeeping ticks count at most two periods each for the
 * peer's silence (the peer's bytes may be waiting unread), and once counted
 * its own silence the same way, so it pinged far less often than agreed and
 * the publisher declared it dead (the deep-flood test's steady publisher,
 * closed under parallel load). Bounded: a fixed number of stalls.
 */
import assert from "node:assert/strict";
import { startDist } from "./helpers/dist.ts";
import { sleep } from "./helpers/raw.ts";
import { codecByName, dial } from "../wire/mod.ts";
import { Deadlines } from "../wire/deadlines.ts";

Deno.test("deadlines: this side's own silence goes by the clock, the peer's by capped ticks", () => {
  const d = new Deadlines(10_000, 10_000);
  d.keepAlive(1000, 3);
  // Ticks after stalls of 2 s, each counted 500 ms for the peer's silence.
  assert.equal(d.check(500, true, false, false, 0, 0, -1, 2000), "ping", "2 s of its own silence");
  assert.equal(d.check(500, false, false, false, 0, 0, -1, 2000), "ping");
  assert.equal(d.check(500, false, false, false, 0, 0, -1, 2000), "ping");
  assert.equal(d.check(500, false, false, false, 0, 0, -1, 2000), "ping");
  assert.equal(d.check(500, false, false, false, 0, 0, -1, 2000), "ping");
  assert.equal(d.check(500, false, false, false, 0, 0, -1, 2000), "ping");
  assert.equal(d.check(500, false, false, false, 0, 0, -1, 2000), "silent", "3 s counted");
});

Deno.test("a broker stalled again and again still pings a publisher that only sends", async () => {
  const b = await startDist(["broker", "--port=0"]);
  const pid = b.child.pid;
  const options = { role: "test", codec: codecByName("json"), heartbeatMs: 1000 };
  const peer = await dial({ host: "127.0.0.1", port: b.port }, { ...options, name: "publisher" });
  // Asks between stalls until the broker answers: it has run (a loaded machine may not run it at once).
  const watch = await dial({ host: "127.0.0.1", port: b.port }, {
    ...options,
    name: "watch",
    liveness: 100,
  });
  // Past the broker's next tick: its welcome is output of the past.
  await sleep(300);
  let stalls = 0;
  try {
    for (; stalls < 6 && !peer.isClosed; stalls++) {
      Deno.kill(pid, "SIGSTOP");
      // Sent while it is stopped: it hears the publisher, the publisher hears nothing.
      for (let i = 0; i < 20; i++) {
        peer.notify("broker.publish", { topic: "/p", value: i, retain: false });
        await sleep(100);
      }
      Deno.kill(pid, "SIGCONT");
      await watch.call("sys.ping");
      await sleep(30);
    }
  } finally {
    Deno.kill(pid, "SIGCONT");
  }
  const closed = peer.isClosed ? await peer.closed : "open";
  peer.close();
  watch.close();
  await b.stop();
  assert.equal(closed, "open", `the publisher's connection after ${stalls} stalls`);
});
