/**
 * A native connection that sent one large publish and went idle keeps
 * nothing of it (hostile review 39b Q13: the read loop and the frame
 * decoder kept the last large frame's buffer, 1 MB a connection, and the
 * read buffer grown for it, 64 KiB, counted nowhere: 1,000 such clients
 * took RSS to 548 MB under a 256 MiB budget).
 */
import assert from "node:assert/strict";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { startBroker } from "./helpers/broker.ts";
import {
  closeQuietly,
  jsonFrame,
  rawHandshake,
  RawReader,
  sleep,
  writeAll,
} from "./helpers/raw.ts";

const MB = 1_000_000;

setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as (o: { type: "major"; execution: "sync" }) => void;

/** Memory outside the JS heap (ArrayBuffers) once what nothing holds is collected. */
function external(): number {
  gc({ type: "major", execution: "sync" });
  return Deno.memoryUsage().external;
}

Deno.test("broker memory: idle native connections that each sent one 1 MB publish keep neither it nor a grown read buffer", async () => {
  const b = await startBroker();
  const conns: Deno.Conn[] = [];
  try {
    // One frame for all: the test's own memory does not grow with the connections.
    const big = jsonFrame({
      method: "broker.publish",
      params: { topic: "/big/x", value: "y".repeat(MB), retain: false },
    });
    const before = external();
    const n = 100;
    for (let i = 0; i < n; i++) {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port: b.port });
      conns.push(conn);
      await rawHandshake(conn, new RawReader(conn));
      await writeAll(conn, big);
    }
    // Read by the broker meanwhile: then every connection idles.
    await sleep(1000);
    const grown = external() - before;
    // Kept, it was 1 MB and 64 KiB each (over 100 MB); now a read buffer of 1 KiB each.
    assert.ok(grown < 10 * MB, `memory outside the heap grew ${(grown / MB).toFixed(1)} MB`);
  } finally {
    for (const c of conns) closeQuietly(c);
    await b.stop();
  }
});
