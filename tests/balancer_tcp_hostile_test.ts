/**
 * `dist balancer --mode tcp` over libc's sockets against the clients of
 * hostile39a's P3 and P4: a client that trickles a byte every few ms costs
 * one wake-up an event (as through HAProxy), and a connection stalled both
 * ways holds at most a read each way (counted from what went in and what the
 * kernel holds on each hop, not guessed from RSS).
 */
import assert from "node:assert/strict";
import { closeQuietly, within, writeAll } from "./helpers/raw.ts";
import { cpuMs } from "./helpers/dist.ts";
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

/** Writes `chunk` to `conn` until it fails (closed); never reads. Counts into `wrote[i]`. */
async function floodWithout(
  conn: Deno.Conn,
  chunk: Uint8Array,
  wrote: number[],
  i: number,
): Promise<void> {
  try {
    // A write the kernel has no room for takes nothing until it settles: the count is every
    // byte the kernel took.
    while (true) wrote[i] += await conn.write(chunk);
  } catch {
    // Closed.
  }
}

/**
 * What the kernel holds of each established TCP connection on 127.0.0.1, by
 * `localPort>remotePort`: [sent and not yet taken by the peer's kernel, or not
 * sent; received and not yet read] (/proc/net/tcp's tx_queue and rx_queue).
 */
function kernelQueues(): Map<string, [number, number]> {
  const queues = new Map<string, [number, number]>();
  for (const line of Deno.readTextFileSync("/proc/net/tcp").split("\n").slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 5 || f[3] !== "01") continue;
    const [local, localPort] = f[1].split(":");
    const [remote, remotePort] = f[2].split(":");
    if (local !== "0100007F" || remote !== "0100007F") continue;
    const [tx, rx] = f[4].split(":").map((h) => parseInt(h, 16));
    queues.set(`${parseInt(localPort, 16)}>${parseInt(remotePort, 16)}`, [tx, rx]);
  }
  return queues;
}

/** The largest of `xs`, and their median. */
function maxMedian(xs: number[]): [number, number] {
  const sorted = [...xs].sort((a, b) => a - b);
  return [sorted[sorted.length - 1], sorted[Math.floor(sorted.length / 2)]];
}

Deno.test({
  name:
    "balancer --mode tcp over libc: a connection stalled both ways holds at most a 20 KiB read each way (hostile39a P3: 94 to 147 KiB in all, HAProxy 34)",
  ignore: Deno.build.os !== "linux",
}, async () => {
  const N = 150;
  const ID = 16;
  const chunk = new Uint8Array(64 * 1024).fill(120);
  const wroteUp = new Array<number>(N).fill(0);
  const wroteDown = new Array<number>(N).fill(0);
  /** By connection: the balancer's port toward the backend. */
  const lbPorts = new Array<number>(N).fill(0);
  const floods: Promise<void>[] = [];
  // Once its client said which it is, sends without end and never reads again.
  const backend = rawBackend(async (conn) => {
    const id = new Uint8Array(ID);
    for (let off = 0, n; off < ID; off += n) {
      if ((n = await conn.read(id.subarray(off))) === null) return;
    }
    const i = Number(new TextDecoder().decode(id).trim());
    lbPorts[i] = (conn.remoteAddr as Deno.NetAddr).port;
    const flood = floodWithout(conn, chunk, wroteDown, i);
    floods.push(flood);
    await flood;
  });
  const lb = await startTcpBalancer([backend.address], ["--check-interval", "1h"]);
  const [host, port] = lb.address.split(":");
  const conns: Deno.Conn[] = [];
  try {
    // Connected and spliced, idle: what a connection holds without a stall is not counted.
    for (let i = 0; i < N; i++) {
      conns.push(await Deno.connect({ hostname: host, port: Number(port) }));
    }
    await untilQuiet(lb.child.pid, 5000);
    const before = rssKiB(lb.child.pid);
    // Each says which it is, then uploads without end and never reads what comes down: both
    // ways stall.
    conns.forEach((conn, i) => {
      floods.push((async () => {
        await writeAll(conn, new TextEncoder().encode(String(i).padEnd(ID)));
        wroteUp[i] = ID;
        await floodWithout(conn, chunk, wroteUp, i);
      })());
    });
    // What the balancer holds of a connection each way: what was written into it less what the
    // kernel holds on every hop and what the backend read (its id). Counted, not measured: RSS
    // also counts the garbage of filling the kernel's buffers, which a loaded machine collects
    // late (39 to 58 KiB a connection with 20 KiB reads, 69 to 101 with 64 KiB; 56.5 failed CI).
    const backendPort = backend.port;
    const held = () => {
      const q = kernelQueues();
      const tx = (key: string) => q.get(key)?.[0] ?? NaN;
      const rx = (key: string) => q.get(key)?.[1] ?? NaN;
      const up: number[] = [], down: number[] = [];
      conns.forEach((conn, i) => {
        const c = (conn.localAddr as Deno.NetAddr).port, b = lbPorts[i];
        const client = `${c}>${port}`, lbClient = `${port}>${c}`;
        const lbBackend = `${b}>${backendPort}`, server = `${backendPort}>${b}`;
        up.push(wroteUp[i] - tx(client) - rx(lbClient) - tx(lbBackend) - rx(server) - ID);
        down.push(wroteDown[i] - tx(server) - rx(lbBackend) - tx(lbClient) - rx(client));
      });
      return { up, down, key: JSON.stringify([wroteUp, wroteDown, up, down]) };
    };
    // Stalled once the kernel's buffers on every hop are full: every connection holds something
    // each way (had it nothing, it would read) and nothing moved for half a second (a snapshot
    // taken while bytes move counts some twice or not at all). Polled: a loaded machine fills
    // the buffers of 150 connections in 3 to 20 s.
    const deadline = performance.now() + 90_000;
    let last = held(), now = last;
    for (;;) {
      await new Promise((r) => setTimeout(r, 500));
      now = held();
      const stalled = now.up.every((n) => n > 0) && now.down.every((n) => n > 0);
      if ((stalled && now.key === last.key) || performance.now() > deadline) break;
      last = now;
    }
    const rss = (rssKiB(lb.child.pid) - before) / N;
    const [maxUp, medianUp] = maxMedian(now.up);
    const [maxDown, medianDown] = maxMedian(now.down);
    const figures = `held up: ${medianUp} B median, ${maxUp} most; down: ${medianDown} median, ` +
      `${maxDown} most (RSS ${rss.toFixed(1)} KiB a connection)`;
    console.log(figures);
    assert.equal(now.key, last.key, `no stall within 90 s: ${figures}`);
    assert.ok(now.up.every((n) => n > 0) && now.down.every((n) => n > 0), figures);
    // At most a read (20 KiB) each way; stop 42 read and kept up to 64 KiB each way (57,344 to
    // 65,536 bytes most here).
    assert.ok(maxUp <= 20 * 1024 && maxDown <= 20 * 1024, figures);
  } finally {
    for (const c of conns) closeQuietly(c);
    await lb.stop();
    await backend.close();
    await Promise.all(floods);
  }
});
