/**
 * A connection set to `wideReads` (the broker's publisher whose run goes to
 * one subscriber: wire/inbound.ts WIDE_READ) reads up to 256 KiB at a time,
 * and back to 64 KiB when it is unset. Either way every frame arrives whole
 * and in order: here frames of 1 byte to 300 KB, written faster than they are
 * read (so reads fill their buffer), with the setting flipped while they come.
 */
import assert from "node:assert/strict";
import { FramedConn } from "../wire/mod.ts";

const HOST = "127.0.0.1";
const FRAMES = 3_000;

/** Frame `i`'s payload: its length and bytes follow from `i` alone. */
function payload(i: number): Uint8Array {
  const n = i % 500 === 499 ? 300_000 : 1 + ((i * 7919) % 3_000);
  const b = new Uint8Array(n);
  for (let k = 0; k < n; k++) b[k] = (i * 31 + k) & 0xff;
  return b;
}

Deno.test("wideReads: frames of 1 B to 300 KB arrive whole and in order while it is set and unset", async () => {
  const listener = Deno.listen({ hostname: HOST, port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  const writer = await Deno.connect({ hostname: HOST, port });
  const socket = await listener.accept();
  const conn = new FramedConn(socket, { maxFrame: 1024 * 1024 });
  let received = 0;
  let bad: string | undefined;
  const done = Promise.withResolvers<void>();
  conn.wideReads = true;
  conn.attach({
    onFrames(batch) {
      for (const frame of batch) {
        const want = payload(received);
        if (
          bad === undefined &&
          (frame.length !== want.length || !frame.every((c, k) => c === want[k]))
        ) {
          bad = `frame ${received}: ${frame.length} bytes, expected ${want.length}`;
        }
        received++;
        // Flipped while frames come: the read buffer grows to 256 KiB, then back to 64 KiB.
        if (received % 700 === 0) conn.wideReads = !(received % 1400 === 0);
        if (received === FRAMES) done.resolve();
      }
    },
    onStreamError: (err) => done.reject(err),
    onEnd: () => done.resolve(),
    onClose: () => done.resolve(),
  });
  conn.start();
  try {
    const send = (async () => {
      for (let i = 0; i < FRAMES; i++) {
        const p = payload(i);
        const frame = new Uint8Array(4 + p.length);
        new DataView(frame.buffer).setUint32(0, p.length);
        frame.set(p, 4);
        for (let off = 0; off < frame.length;) off += await writer.write(frame.subarray(off));
      }
    })();
    const timer = setTimeout(() => done.reject(new Error(`timed out at ${received}`)), 60_000);
    try {
      await Promise.all([send, done.promise]);
    } finally {
      clearTimeout(timer);
    }
    assert.equal(bad, undefined);
    assert.equal(received, FRAMES);
  } finally {
    conn.close();
    try {
      writer.close();
    } catch {
      // already closed
    }
    listener.close();
  }
});
