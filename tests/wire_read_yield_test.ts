/**
 * A read loop that keeps finding bytes waiting yields a turn of the event
 * loop after a run of full reads (wire/inbound.ts), so other connections'
 * input is still taken up; the run grows (up to 16 reads) while nobody else
 * reads during those turns, and is short again once someone does. Here a
 * broker in its own process is flooded by connections that write large
 * publishes (to a topic nobody reads) as fast as it takes them, and a
 * client beside them pings it: without the yields each ping waited
 * 0.5-1 s behind the flood, with them a few ms.
 */
import assert from "node:assert/strict";
import { codecByName, dial, type Peer } from "../wire/mod.ts";
import { startDist } from "./helpers/dist.ts";

/** A publish frame with a 200 KB string value, eight of them in a row. */
function floodBlock(): Uint8Array {
  const payload = new TextEncoder().encode(
    JSON.stringify({
      method: "broker.publish",
      params: { topic: "/flood", value: "x".repeat(200_000), retain: false },
    }),
  );
  const frame = new Uint8Array(4 + payload.length);
  new DataView(frame.buffer).setUint32(0, payload.length);
  frame.set(payload, 4);
  const block = new Uint8Array(frame.length * 8);
  for (let k = 0; k < 8; k++) block.set(frame, k * frame.length);
  return block;
}

/** Median ping time (ms) beside `flooders` flooding connections. */
async function pingBesideFlood(port: number, flooders: number): Promise<number> {
  const block = floodBlock();
  const peers: Peer[] = [];
  let stop = false;
  const floods: Promise<void>[] = [];
  const codec = codecByName("json");
  for (let i = 0; i < flooders; i++) {
    const peer = await dial({ host: "127.0.0.1", port }, {
      role: "test",
      name: `flood${i}`,
      codec,
    });
    peers.push(peer);
    const socket = peer.conn.conn;
    floods.push((async () => {
      try {
        while (!stop) {
          for (let off = 0; off < block.length;) off += await socket.write(block.subarray(off));
        }
      } catch {
        // closed at the end
      }
    })());
  }
  const pinger = await dial({ host: "127.0.0.1", port }, { role: "test", name: "pinger", codec });
  try {
    await new Promise((r) => setTimeout(r, 300)); // the flood under way
    const times: number[] = [];
    for (let i = 0; i < 25; i++) {
      const t0 = performance.now();
      await pinger.call("sys.ping", {});
      times.push(performance.now() - t0);
      await new Promise((r) => setTimeout(r, 20));
    }
    times.sort((a, b) => a - b);
    return times[times.length >> 1];
  } finally {
    stop = true;
    pinger.close();
    for (const p of peers) p.close();
    await Promise.all(floods);
  }
}

Deno.test("a connection beside flooding ones is still read: pings answered in ms, not behind the flood", async () => {
  const broker = await startDist(["broker", "--port", "0", "--heartbeat", "5000"]);
  try {
    for (const flooders of [1, 4]) {
      const p50 = await pingBesideFlood(broker.port, flooders);
      // Without the yields: 500-1,000 ms; with them a few ms (loaded machine: tens).
      assert.ok(p50 < 150, `${flooders} flooder(s): ping p50 ${p50.toFixed(1)} ms`);
    }
  } finally {
    await broker.stop();
  }
});
