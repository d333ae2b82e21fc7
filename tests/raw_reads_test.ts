/**
 * wire/raw_reads.ts: the balancer's connections read through an epoll of
 * our own once they have written through `send`. What a peer sends must
 * arrive whole and in order, pausing must stop it, an end must end it, a
 * send buffer that fills must drain from there, and the runtime's own
 * sockets and timers must go on while adopted sockets are busy.
 */
import assert from "node:assert/strict";
import { FramedConn } from "../wire/conn.ts";
import type { ConnHandler } from "../wire/handoff.ts";
import { rawReads } from "../wire/raw_reads.ts";
import { useRawSend } from "../wire/raw_send.ts";
import { tcpPair } from "./helpers/raw.ts";

/** What a connection received: copies of its frames, whether it ended, why it closed. */
class Taken implements ConnHandler {
  frames: Uint8Array[] = [];
  ended = false;
  closed: string | undefined;
  #waiters: (() => void)[] = [];
  onFrames(frames: Uint8Array[]): void {
    for (const f of frames) this.frames.push(f.slice());
    for (const w of this.#waiters.splice(0)) w();
  }
  onStreamError(): void {}
  onEnd(): void {
    this.ended = true;
    for (const w of this.#waiters.splice(0)) w();
  }
  onClose(reason: string): void {
    this.closed = reason;
    for (const w of this.#waiters.splice(0)) w();
  }
  /** Resolves once `check` holds (checked on every arrival), failing after `ms`. */
  async until(check: () => boolean, ms = 10_000): Promise<void> {
    const end = Date.now() + ms;
    while (!check()) {
      if (Date.now() > end) assert.fail(`not within ${ms} ms (${this.frames.length} frames)`);
      await new Promise<void>((resolve) => {
        this.#waiters.push(resolve);
        setTimeout(resolve, 50);
      });
    }
  }
}

/** Frame `i`: its length is `size(i)`, each byte (i + position) mod 251. */
function frame(i: number, size: number): Uint8Array {
  const f = new Uint8Array(size);
  for (let k = 0; k < size; k++) f[k] = (i + k) % 251;
  return f;
}

function sameFrame(got: Uint8Array, i: number, size: number): void {
  if (got.length !== size) assert.fail(`frame ${i}: ${got.length} bytes where ${size} were sent`);
  for (let k = 0; k < size; k++) {
    if (got[k] !== (i + k) % 251) assert.fail(`frame ${i}, byte ${k}: ${got[k]}`);
  }
}

function sendFrame(conn: FramedConn, f: Uint8Array): void {
  const head = new Uint8Array(4);
  new DataView(head.buffer).setUint32(0, f.length);
  conn.sendRaw(head);
  conn.sendRaw(f);
}

/** Two framed connections over loopback that have each written enough to be adopted. */
async function adoptedPair(): Promise<{ a: FramedConn; b: FramedConn; ta: Taken; tb: Taken }> {
  assert.ok(useRawSend(), "libc send available (Linux, --allow-ffi)");
  const before = rawReads?.count ?? 0;
  const [ca, cb] = await tcpPair();
  const a = new FramedConn(ca), b = new FramedConn(cb);
  const ta = new Taken(), tb = new Taken();
  a.attach(ta);
  b.attach(tb);
  a.start();
  b.start();
  // Ping-pong: each side writes (and reads) until its socket is adopted (a
  // descriptor is looked up after 8 writes, by a scan at most every 250 ms;
  // only reads that come close together are adopted: a few at once, then a
  // pause, as a connection that gives up on the scan after 512 writes would).
  const end = Date.now() + 5000;
  for (let i = 0; i < 40 || ((rawReads?.count ?? 0) < before + 2 && Date.now() < end); i++) {
    sendFrame(a, frame(i, 10));
    await tb.until(() => tb.frames.length > i);
    sendFrame(b, frame(i, 10));
    await ta.until(() => ta.frames.length > i);
    if (i >= 40 && i % 4 === 0) await new Promise((r) => setTimeout(r, 10));
  }
  assert.ok(rawReads !== undefined, "raw reads on");
  assert.equal(rawReads.count, before + 2, "both sockets read through our epoll");
  ta.frames = [];
  tb.frames = [];
  return { a, b, ta, tb };
}

Deno.test("raw reads: frames arrive whole and in order, pausing stops them, a full send buffer drains", async () => {
  const { a, b, ta, tb } = await adoptedPair();
  try {
    const size = (i: number) => 1 + (i * 7919) % 70_000;
    // Paused: nothing is delivered, and 24 MiB fill both socket buffers (the
    // writer's sends then wait for the socket to be writable on our epoll).
    b.pauseReading();
    let total = 0, n = 0;
    while (total < 24 * 1024 * 1024) {
      sendFrame(a, frame(n, size(n)));
      total += size(n++);
    }
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(tb.frames.length, 0, "nothing read while paused");
    assert.ok(a.pendingBytes > 0, "the writer holds what the socket did not take");
    b.resumeReading();
    await tb.until(() => tb.frames.length >= n, 30_000);
    for (let i = 0; i < n; i++) sameFrame(tb.frames[i], i, size(i));
    await a.drained(0);
    assert.equal(a.bytesOut - b.bytesIn, 0, "every byte written was read");
    // The other way, many small frames in quick succession.
    for (let i = 0; i < 5000; i++) sendFrame(b, frame(i, 1 + i % 300));
    await ta.until(() => ta.frames.length >= 5000);
    for (let i = 0; i < 5000; i++) sameFrame(ta.frames[i], i, 1 + i % 300);
    assert.equal(ta.closed ?? tb.closed, undefined);
  } finally {
    a.close();
    b.close();
  }
});

Deno.test("raw reads: the peer's end is read as an end, and closed sockets leave our epoll", async () => {
  const before = rawReads?.count ?? 0;
  const { a, b, tb } = await adoptedPair();
  try {
    sendFrame(a, frame(7, 100));
    await a.drained(0);
    a.close();
    await tb.until(() => tb.ended || tb.closed !== undefined);
    assert.equal(tb.frames.length, 1, "what came before the end was read");
    sameFrame(tb.frames[0], 7, 100);
  } finally {
    a.close();
    b.close();
  }
  assert.equal(rawReads!.count, before, "both sockets left our epoll");
});

Deno.test("raw reads: the runtime's sockets and timers go on while adopted sockets are busy", async () => {
  const { a, b, ta, tb } = await adoptedPair();
  const [x, y] = await tcpPair();
  let busy = true;
  // a and b exchange frames flat out, each answer sent as its question arrives.
  const pump = (async () => {
    for (let i = 0; busy; i++) {
      sendFrame(a, frame(i, 64));
      await tb.until(() => tb.frames.length > i);
      sendFrame(b, frame(i, 64));
      await ta.until(() => ta.frames.length > i);
    }
  })();
  try {
    await tb.until(() => tb.frames.length > 20);
    // 200 round trips over the runtime's own sockets beside them: a wait of
    // ours that held the runtime up would cost each one a millisecond or more.
    const one = new Uint8Array(1);
    const started = performance.now();
    for (let i = 0; i < 200; i++) {
      await x.write(one);
      assert.equal(await y.read(one), 1);
      await y.write(one);
      assert.equal(await x.read(one), 1);
    }
    const ms = performance.now() - started;
    const timer = performance.now();
    await new Promise((r) => setTimeout(r, 5));
    const late = performance.now() - timer - 5;
    assert.ok(ms < 150, `200 round trips of the runtime's took ${ms.toFixed(1)} ms`);
    assert.ok(late < 50, `a 5 ms timer fired ${late.toFixed(1)} ms late`);
  } finally {
    busy = false;
    await pump;
    a.close();
    b.close();
    x.close();
    y.close();
  }
});

Deno.test("raw reads: a socket read now and then goes back to the runtime, and comes back when busy (hostile43c C1)", async () => {
  const before = rawReads?.count ?? 0;
  const { a, b, ta, tb } = await adoptedPair();
  try {
    // One exchange every 30 ms: each ends a wait on the other thread, and
    // both sockets go back to the runtime's reads (which cost less then).
    for (let i = 0; i < 10; i++) {
      await new Promise((r) => setTimeout(r, 30));
      sendFrame(a, frame(i, 50));
      await tb.until(() => tb.frames.length > i);
      sendFrame(b, frame(i, 50));
      await ta.until(() => ta.frames.length > i);
    }
    assert.equal(rawReads!.count, before, "both back on the runtime's reads");
    // Flat out again: back onto our epoll; nothing lost or reordered either way.
    const end = Date.now() + 5000;
    let i = 10;
    for (; i < 400 && (rawReads!.count < before + 2 || i < 200) && Date.now() < end; i++) {
      sendFrame(a, frame(i, 50));
      await tb.until(() => tb.frames.length > i);
      sendFrame(b, frame(i, 50));
      await ta.until(() => ta.frames.length > i);
    }
    assert.equal(rawReads!.count, before + 2, "both read through our epoll again");
    for (let k = 0; k < i; k++) {
      sameFrame(ta.frames[k], k, 50);
      sameFrame(tb.frames[k], k, 50);
    }
  } finally {
    a.close();
    b.close();
  }
});
