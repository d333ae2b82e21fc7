/**
 * wire/raw_send.ts + raw_reads.ts: a connection opened just after another
 * one's descriptor look-up (a /proc scan, at most every 250 ms) that then
 * writes flat out must still be found at the next scan, and read and
 * written by `send` and our epoll from then on. It used to be given up on
 * for good after 512 writes before that scan: a client that connected
 * during busy traffic then cost the balancer the runtime's ops for its
 * whole life. Its own file: the scan's timing is the process's.
 */
import assert from "node:assert/strict";
import { FramedConn } from "../wire/conn.ts";
import type { ConnHandler } from "../wire/handoff.ts";
import { rawReads } from "../wire/raw_reads.ts";
import { rawSend, useRawSend } from "../wire/raw_send.ts";
import { tcpPair } from "./helpers/raw.ts";

/** Counts the frames a connection receives and wakes whoever waits for the next. */
class Counter implements ConnHandler {
  count = 0;
  #wake: (() => void) | undefined;
  onFrames(frames: Uint8Array[]): void {
    this.count += frames.length;
    this.#wake?.();
  }
  onStreamError(): void {}
  onEnd(): void {}
  onClose(): void {
    this.#wake?.();
  }
  /** Resolves once more than `n` frames arrived (fails after 5 s). */
  async past(n: number): Promise<void> {
    const end = Date.now() + 5000;
    while (this.count <= n) {
      if (Date.now() > end) assert.fail(`frame ${n + 1} not within 5 s`);
      await new Promise<void>((resolve) => {
        this.#wake = resolve;
        setTimeout(resolve, 50);
      });
    }
  }
}

const FRAME = new Uint8Array([0, 0, 0, 3, 1, 2, 3]);

async function framedPair() {
  const [ca, cb] = await tcpPair();
  const a = new FramedConn(ca), b = new FramedConn(cb);
  const ta = new Counter(), tb = new Counter();
  a.attach(ta);
  b.attach(tb);
  a.start();
  b.start();
  /** One round trip: a frame each way, each its own write. */
  const round = async () => {
    a.sendRaw(FRAME);
    await tb.past(tb.count);
    b.sendRaw(FRAME);
    await ta.past(ta.count);
  };
  return { a, b, ca, round };
}

Deno.test("raw send: a connection that writes flat out right after another's look-up is read and written by send after the next scan", async () => {
  assert.ok(useRawSend(), "libc send available (Linux, --allow-ffi)");
  const first = await framedPair();
  const second: { a?: FramedConn; b?: FramedConn } = {};
  try {
    // The first pair's look-up scans /proc now: the second pair is not in that scan.
    assert.ok(rawSend!.fdOf(first.ca, 100) >= 0, "first pair found");
    const before = rawReads?.count ?? 0;
    const late = await framedPair();
    second.a = late.a;
    second.b = late.b;
    const from = Date.now();
    // Flat out: each side writes 600 times (more than the 512 it used to be
    // allowed) within the 250 ms before the next scan, when the machine is
    // fast enough; then on with short pauses (adoption wants reads close
    // together, or the loop busy) until both sockets are on our epoll.
    for (let i = 0; i < 600; i++) await late.round();
    const flat = Date.now() - from;
    const end = Date.now() + 4000;
    for (let i = 0; (rawReads?.count ?? 0) < before + 2 && Date.now() < end; i++) {
      await late.round();
      if (i % 4 === 3) await new Promise((r) => setTimeout(r, 5));
    }
    assert.ok(rawReads !== undefined, "raw reads on");
    assert.equal(
      rawReads.count - before,
      2,
      `both late sockets read through our epoll (600 round trips took ${flat} ms)`,
    );
  } finally {
    for (const c of [first.a, first.b, second.a, second.b]) c?.close();
  }
});
