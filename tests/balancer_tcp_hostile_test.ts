/**
 * `dist balancer --mode tcp` over libc's sockets against the clients of
 * hostile39a's P3 and P4: a client that trickles a byte every few ms costs
 * one wake-up an event (as through HAProxy), and a connection stalled both
 * ways holds a bounded amount of memory.
 */
import assert from "node:assert/strict";
import { closeQuietly, within, writeAll } from "./helpers/raw.ts";
import { rawBackend, startTcpBalancer } from "./helpers/tcp_backend.ts";

/** Voluntary context switches of every thread of `pid` so far (each sleep is one). */
function sleeps(pid: number): number {
  let n = 0;
  for (const task of Deno.readDirSync(`/proc/${pid}/task`)) {
    try {
      const status = Deno.readTextFileSync(`/proc/${pid}/task/${task.name}/status`);
      n += Number(/\nvoluntary_ctxt_switches:\s+(\d+)/.exec(status)![1]);
    } catch {
      // The thread ended meanwhile.
    }
  }
  return n;
}

/** A backend that sends back whatever it reads. */
function echoBackend() {
  return rawBackend(async (conn) => {
    const buf = new Uint8Array(64 * 1024);
    for (let n; (n = await conn.read(buf)) !== null;) await writeAll(conn, buf.subarray(0, n));
  });
}

Deno.test({
  name:
    "balancer --mode tcp over libc: a client trickling a byte every 3 ms costs about a wake-up an event, as through HAProxy (hostile39a P4: 5 a round trip)",
  ignore: Deno.build.os !== "linux",
}, async () => {
  const backend = echoBackend();
  const lb = await startTcpBalancer([backend.address], ["--check-interval", "1h"]);
  const [host, port] = lb.address.split(":");
  const conn = await Deno.connect({ hostname: host, port: Number(port) });
  const byte = new Uint8Array([120]);
  const buf = new Uint8Array(16);
  const roundTrip = async () => {
    await writeAll(conn, byte);
    assert.equal(await within(conn.read(buf), 5000, "the byte echoed"), 1);
  };
  try {
    await roundTrip();
    const before = sleeps(lb.child.pid);
    const N = 400;
    for (let i = 0; i < N; i++) {
      await roundTrip();
      await new Promise((r) => setTimeout(r, 3));
    }
    const perRoundTrip = (sleeps(lb.child.pid) - before) / N;
    // A round trip is two events (the byte, its echo): HAProxy sleeps 2.1 times a round trip.
    // Stop 42's loop waited 1 ms at a time and stayed awake for 4 empty waits after an event:
    // 4.9 to 5.3 (7.2 % of a core at this pace against HAProxy's 1.7 %).
    assert.ok(perRoundTrip < 3.5, `${perRoundTrip.toFixed(1)} wake-ups a round trip`);
  } finally {
    closeQuietly(conn);
    await lb.stop();
    await backend.close();
  }
});
