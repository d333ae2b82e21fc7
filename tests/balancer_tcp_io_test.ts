/**
 * The sockets under `dist balancer --mode tcp`: libc's through epoll where
 * it can (Linux, IP literals), Deno's otherwise (`DIST_TCP_IO=runtime`, a
 * backend given by name); each passes the same bytes, half-close included,
 * and an idle connection through libc's holds no read buffer.
 */
import assert from "node:assert/strict";
import { closeQuietly, waitFor, within, writeAll } from "./helpers/raw.ts";
import { countThenAnswer, halfClose, rawBackend, startTcpBalancer } from "./helpers/tcp_backend.ts";
import { IdleClock } from "../roles/balancer/tcp/splice.ts";

const encoder = new TextEncoder();

for (
  const [what, env, host, io] of [
    ["by default", {}, "127.0.0.1", "epoll \\(libc\\)"],
    ["with DIST_TCP_IO=runtime", { DIST_TCP_IO: "runtime" }, "127.0.0.1", "Deno's sockets"],
    ["with a backend given by name", {}, "localhost", "Deno's sockets"],
  ] as const
) {
  Deno.test({
    name: `balancer --mode tcp ${what}: says which sockets it uses; bytes and half-close pass`,
    // libc's sockets are Linux's (x86_64 and aarch64).
    ignore: io !== "Deno's sockets" && Deno.build.os !== "linux",
  }, async () => {
    const backend = rawBackend(countThenAnswer);
    const lb = await startTcpBalancer([`${host}:${backend.port}`], [], { env });
    try {
      const says = new RegExp(`policy round-robin, through ${io}`);
      await waitFor(() => says.test(lb.stderr()), 5000, "the line naming the sockets");
      for (let i = 0; i < 3; i++) assert.equal(await halfClose(lb.address), "got 200000");
      // Each one's end is logged with its bytes both ways.
      const ends = () => lb.stderr().match(/closed \(eof\): 200000 bytes up, 10 bytes down/g);
      await waitFor(() => ends()?.length === 3, 5000, "three log lines");
    } finally {
      await lb.stop();
      await backend.close();
    }
  });
}

for (
  const [what, env, io] of [
    ["by default", {}, "epoll \\(libc\\)"],
    ["with DIST_TCP_IO=runtime", { DIST_TCP_IO: "runtime" }, "Deno's sockets"],
  ] as const
) {
  Deno.test({
    name:
      `balancer --mode tcp ${what}: its checks (dialed as clients are, stop 48) take a backend that stops listening out and bring it back, and it stops cleanly`,
    ignore: io !== "Deno's sockets" && Deno.build.os !== "linux",
  }, async () => {
    const backend = rawBackend(countThenAnswer);
    const lb = await startTcpBalancer([backend.address], [], { env });
    let listener: Deno.Listener | undefined;
    try {
      await waitFor(() => new RegExp(`through ${io}`).test(lb.stderr()), 5000, "the sockets line");
      await backend.close();
      const where = backend.address.replaceAll(".", "\\.");
      const down = new RegExp(
        `Backend ${where} is down: Cannot connect to ${where}: Connection refused`,
      );
      await waitFor(() => down.test(lb.stderr()), 5000, "the backend out by a refused check");
      // Listening again (a check needs only the handshake, which the kernel makes).
      listener = Deno.listen({ hostname: "127.0.0.1", port: backend.port });
      const accepting = (async () => {
        for await (const conn of listener) closeQuietly(conn);
      })().catch(() => {});
      const up = new RegExp(`Backend ${where} is up: health checks pass`);
      await waitFor(() => up.test(lb.stderr()), 5000, "the backend back by checks");
      // No check's dial holds the stop up (they go through the sockets it closes last).
      const { code, killed } = await lb.stop();
      assert.equal(killed, false, lb.stderr());
      assert.equal(code, 0, lb.stderr());
      closeQuietly(listener);
      await accepting;
    } finally {
      if (listener !== undefined) closeQuietly(listener);
      await lb.stop();
    }
  });
}

/** A backend that answers "ok" to every read. */
function okBackend() {
  return rawBackend(async (conn) => {
    const buf = new Uint8Array(1024);
    while ((await conn.read(buf)) !== null) await writeAll(conn, encoder.encode("ok"));
  });
}

Deno.test("balancer --mode tcp: 2,000 idle proxied connections hold less than 16 KiB each (no read buffer while idle)", async () => {
  const N = 2000;
  const backend = okBackend();
  const lb = await startTcpBalancer([`127.0.0.1:${backend.port}`]);
  const conns: Deno.Conn[] = [];
  const rss = () =>
    Number(/VmRSS:\s+(\d+) kB/.exec(Deno.readTextFileSync(`/proc/${lb.child.pid}/status`))![1]);
  try {
    const before = rss();
    const [host, port] = lb.address.split(":");
    const buf = new Uint8Array(16);
    for (let i = 0; i < N; i++) {
      const conn = await Deno.connect({ hostname: host, port: Number(port) });
      conns.push(conn);
      // A byte each way: both sides spliced, and each way has passed bytes.
      await writeAll(conn, encoder.encode("hi"));
      assert.equal(await within(conn.read(buf), 5000, "an answer"), 2);
    }
    await new Promise((r) => setTimeout(r, 1000));
    const perConnection = (rss() - before) / N;
    // Deno's sockets: a read pending into a buffer each way, 20 to 24 KiB a connection.
    assert.ok(perConnection < 16, `${perConnection.toFixed(1)} KiB a connection`);
  } finally {
    for (const c of conns) closeQuietly(c);
    await lb.stop();
    await backend.close();
  }
});

/** Context switches of every thread of `pid` so far (each wake-up is one). */
function wakeUps(pid: number): number {
  let n = 0;
  for (const task of Deno.readDirSync(`/proc/${pid}/task`)) {
    const status = Deno.readTextFileSync(`/proc/${pid}/task/${task.name}/status`);
    for (const m of status.matchAll(/voluntary_ctxt_switches:\s+(\d+)/g)) n += Number(m[1]);
  }
  return n;
}

Deno.test({
  name:
    "balancer --mode tcp over libc: idle, it sleeps (a few wake-ups a second, not a wait that times out every 100 ms)",
  ignore: Deno.build.os !== "linux",
}, async () => {
  const backend = okBackend();
  // No checks meanwhile: only the balancer's own timers and its loop wake it.
  const lb = await startTcpBalancer([`127.0.0.1:${backend.port}`], ["--check-interval", "1h"]);
  const [host, port] = lb.address.split(":");
  const conn = await Deno.connect({ hostname: host, port: Number(port) });
  try {
    // A connection passed a byte each way and now idle, as most are.
    await writeAll(conn, encoder.encode("hi"));
    assert.equal(await within(conn.read(new Uint8Array(16)), 5000, "an answer"), 2);
    await new Promise((r) => setTimeout(r, 500));
    const before = wakeUps(lb.child.pid);
    await new Promise((r) => setTimeout(r, 3000));
    const perSecond = (wakeUps(lb.child.pid) - before) / 3;
    // Before: its loop's wait on another thread timed out every 100 ms (about 40 a second in all).
    assert.ok(perSecond < 12, `${perSecond.toFixed(1)} wake-ups a second`);
    // And it still passes bytes at once after the idle spell.
    await writeAll(conn, encoder.encode("hi"));
    assert.equal(await within(conn.read(new Uint8Array(16)), 5000, "an answer"), 2);
  } finally {
    closeQuietly(conn);
    await lb.stop();
    await backend.close();
  }
});

Deno.test({
  name:
    "balancer --mode tcp over libc: a connection after an idle spell is passed on at once (not a millisecond later)",
  ignore: Deno.build.os !== "linux",
}, async () => {
  const backend = okBackend();
  const lb = await startTcpBalancer([`127.0.0.1:${backend.port}`], ["--check-interval", "1h"]);
  const [host, port] = lb.address.split(":");
  /** Connect, a byte each way, close: how long it took (ms). */
  const once = async (p: number) => {
    const started = performance.now();
    const conn = await Deno.connect({ hostname: host, port: p });
    try {
      await writeAll(conn, encoder.encode("hi"));
      await within(conn.read(new Uint8Array(16)), 5000, "an answer");
    } finally {
      closeQuietly(conn);
    }
    return performance.now() - started;
  };
  try {
    const direct: number[] = [];
    const through: number[] = [];
    // 60 pairs: the bug added ≥ 1 ms to every one, and a loaded machine (CI at load ~15: 1.21 ms
    // added at the quickest of 25) slows most of them.
    for (let i = 0; i < 60; i++) {
      // Long enough for its loop to wait on the other thread (idle) before each.
      await new Promise((r) => setTimeout(r, 20));
      direct.push(await once(backend.port));
      await new Promise((r) => setTimeout(r, 20));
      through.push(await once(Number(port)));
    }
    // Before: the first batch after an idle wait left the splice's start to after a 1 ms wait,
    // every time. The quickest of each (a loaded machine slows some of them down):
    const added = Math.min(...through) - Math.min(...direct);
    assert.ok(
      added < 1,
      `${added.toFixed(2)} ms added (direct ${Math.min(...direct).toFixed(2)} ms)`,
    );
  } finally {
    await lb.stop();
    await backend.close();
  }
});

Deno.test("--idle-timeout 0 is no idle timeout, as HAProxy's timeout client 0 (hostile39a P5: every connection closed after 8 ms)", () => {
  const never = new IdleClock(0);
  assert.equal(never.ticks, Infinity);
  assert.equal(never.tickMs, 1000, "no 10 ms ticker for nothing");
  const twoSeconds = new IdleClock(2000);
  assert.equal(twoSeconds.tickMs * twoSeconds.ticks, 2000);
});
