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

/** The balancer's resident memory (KiB). */
function rssKiB(pid: number): number {
  return Number(/VmRSS:\s+(\d+) kB/.exec(Deno.readTextFileSync(`/proc/${pid}/status`))![1]);
}

/** CPU time of every thread of `pid` so far (ms). */
function cpuMs(pid: number): number {
  let ns = 0;
  for (const task of Deno.readDirSync(`/proc/${pid}/task`)) {
    try {
      ns += Number(Deno.readTextFileSync(`/proc/${pid}/task/${task.name}/schedstat`).split(" ")[0]);
    } catch {
      // The thread ended meanwhile.
    }
  }
  return ns / 1e6;
}

/** Waits (at most `ms`) until `pid` takes under 10 ms of CPU in half a second. */
async function untilQuiet(pid: number, ms: number): Promise<void> {
  const end = performance.now() + ms;
  let last = cpuMs(pid);
  while (performance.now() < end) {
    await new Promise((r) => setTimeout(r, 500));
    const now = cpuMs(pid);
    if (now - last < 10) return;
    last = now;
  }
}

/** When a flood last wrote a byte. */
let progress = 0;

/** Writes `chunk` to `conn` until it fails (closed); never reads. */
async function floodWithout(conn: Deno.Conn, chunk: Uint8Array): Promise<void> {
  try {
    while (true) {
      await conn.write(chunk);
      progress = performance.now();
    }
  } catch {
    // Closed.
  }
}

/** Waits (at most `ms`) until no flood has written a byte for a second. */
async function untilStalled(ms: number): Promise<void> {
  const end = performance.now() + ms;
  while (performance.now() < end && performance.now() - progress < 1000) {
    await new Promise((r) => setTimeout(r, 100));
  }
}

Deno.test({
  name:
    "balancer --mode tcp over libc: a connection stalled both ways holds at most a 20 KiB read each way (hostile39a P3: 94 to 147 KiB in all, HAProxy 34)",
  ignore: Deno.build.os !== "linux",
}, async () => {
  const N = 150;
  const chunk = new Uint8Array(64 * 1024).fill(120);
  // Once its client spoke, sends without end and never reads again.
  const backend = rawBackend(async (conn) => {
    await conn.read(new Uint8Array(16));
    await floodWithout(conn, chunk);
  });
  const lb = await startTcpBalancer([backend.address], ["--check-interval", "1h"]);
  const [host, port] = lb.address.split(":");
  const conns: Deno.Conn[] = [];
  const floods: Promise<void>[] = [];
  try {
    // Connected and spliced, idle: what a connection holds without a stall is not counted.
    for (let i = 0; i < N; i++) {
      conns.push(await Deno.connect({ hostname: host, port: Number(port) }));
    }
    await untilQuiet(lb.child.pid, 5000);
    const before = rssKiB(lb.child.pid);
    // Each uploads without end and never reads what comes down: both ways stall.
    for (const conn of conns) floods.push(floodWithout(conn, chunk));
    // Stalled once the kernel's buffers on every hop are full: no write goes through.
    progress = performance.now();
    await untilStalled(30_000);
    const perConnection = (rssKiB(lb.child.pid) - before) / N;
    // What was read and not taken, each way, and the garbage of filling the kernel's buffers:
    // 39 to 42 KiB (20 KiB reads); stop 42 read and kept up to 64 KiB each way: 69 to 75 here.
    assert.ok(perConnection < 56, `${perConnection.toFixed(1)} KiB a connection`);
  } finally {
    for (const c of conns) closeQuietly(c);
    await Promise.all(floods);
    await lb.stop();
    await backend.close();
  }
});
