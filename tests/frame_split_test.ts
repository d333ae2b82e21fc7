/**
 * FrameDecoder with frames split across reads: only the split frame is
 * copied, the rest of the read is borrowed, frames stay valid until the
 * next push, at every cut of the stream and at the frame limit.
 */
import assert from "node:assert/strict";
import { FrameDecoder } from "../wire/mod.ts";
import { concat, frame, header, prng } from "./helpers/raw.ts";
import { isCode } from "./helpers/rpc.ts";

function payload(size: number, salt: number): Uint8Array {
  return new Uint8Array(size).map((_, i) => (i * 13 + salt) & 0xff);
}

/** Every frame of the decoder now, as returned (views, not copies). */
function drain(d: FrameDecoder): Uint8Array[] {
  const out: Uint8Array[] = [];
  let f: Uint8Array | null;
  while ((f = d.next()) !== null) out.push(f);
  return out;
}

Deno.test("FrameDecoder.push() copies only the split frame: the frames after it are read from the chunk", () => {
  // 150-byte frames in reads of 1,000 bytes: every read ends inside a frame.
  const frames = Array.from({ length: 40 }, (_, i) => payload(146, i));
  const stream = concat(frames.map(frame));
  const d = new FrameDecoder();
  const got: Uint8Array[] = [];
  for (let off = 0; off < stream.length; off += 1000) {
    const chunk = stream.slice(off, off + 1000);
    const out = drainPushed(d, chunk);
    for (let k = 0; k < out.length; k++) {
      // The first frame of a read (but the first read's) was split: it is the decoder's copy.
      const split = off % 150 !== 0 && k === 0;
      assert.equal(out[k].buffer === chunk.buffer, !split, `read at ${off}, frame ${k}`);
      got.push(out[k].slice());
    }
  }
  assert.deepEqual(got, frames);
  assert.equal(d.buffered, 0);
});

function drainPushed(d: FrameDecoder, chunk: Uint8Array): Uint8Array[] {
  d.push(chunk);
  return drain(d);
}

Deno.test("FrameDecoder.next() frames stay valid until the next push(), the split one included", () => {
  // The split frame is larger than the one split after it: a decoder that put the second
  // into the first one's buffer would overwrite a frame it returned in the same push.
  const a = payload(40, 1), b = payload(30, 2), c = payload(11, 3), e = payload(25, 4);
  const stream = concat([frame(a), frame(b), frame(c), frame(e), frame(a)]);
  for (let cut1 = 1; cut1 < stream.length - 1; cut1++) {
    for (const cut2 of [cut1 + 1, cut1 + 7, cut1 + 44, cut1 + 60, stream.length - 1]) {
      if (cut2 <= cut1 || cut2 >= stream.length) continue;
      const d = new FrameDecoder();
      const expected = [a, b, c, e, a];
      let i = 0;
      for (const [from, to] of [[0, cut1], [cut1, cut2], [cut2, stream.length]]) {
        const chunk = stream.slice(from, to);
        const out = drainPushed(d, chunk);
        // All of this push's frames intact after every next(), then the chunk scribbled.
        for (const f of out) assert.deepEqual(f, expected[i++], `cuts ${cut1}/${cut2}`);
        chunk.fill(0xee);
      }
      assert.equal(i, expected.length, `cuts ${cut1}/${cut2}`);
      assert.equal(d.buffered, 0);
    }
  }
});

Deno.test("FrameDecoder.buffered counts the split frame and the chunk's bytes behind it", () => {
  const a = payload(10, 1), b = payload(10, 2);
  const stream = concat([frame(a), frame(b)]);
  const d = new FrameDecoder();
  d.push(stream.slice(0, 2));
  assert.equal(d.next(), null);
  assert.equal(d.buffered, 2);
  d.push(stream.slice(2)); // completes a, then all of b
  assert.equal(d.buffered, 28);
  assert.deepEqual(d.next(), a);
  assert.equal(d.buffered, 14);
  assert.deepEqual(d.next(), b);
  assert.equal(d.buffered, 0);
  assert.equal(d.next(), null);
});

Deno.test("FrameDecoder.next() reads a header split at each of its bytes, then the frames behind it", () => {
  const a = payload(5, 1), b = payload(0, 2), c = payload(300, 3);
  const stream = concat([frame(a), frame(b), frame(c)]);
  for (let cut = 1; cut < stream.length; cut++) {
    for (const cut2 of [cut + 1, cut + 2, cut + 3, stream.length]) {
      if (cut2 > stream.length) continue;
      const d = new FrameDecoder();
      const got: Uint8Array[] = [];
      for (const [from, to] of [[0, cut], [cut, cut2], [cut2, stream.length]]) {
        if (from < to) got.push(...drainPushed(d, stream.slice(from, to)).map((f) => f.slice()));
      }
      assert.deepEqual(got, [a, b, c], `cuts ${cut}/${cut2}`);
    }
  }
});

Deno.test("FrameDecoder.next() at the limit: a split frame of exactly maxFrame bytes passes, one more is refused once its header is whole", () => {
  const max = 1000;
  const ok = payload(max, 5);
  for (const cut of [1, 3, 4, 5, 500, max + 3]) {
    const d = new FrameDecoder(max);
    const stream = concat([frame(ok), frame(payload(3, 1))]);
    const got = [...drainPushed(d, stream.slice(0, cut)), ...drainPushed(d, stream.slice(cut))];
    assert.deepEqual(got.map((f) => f.length), [max, 3], `cut at ${cut}`);
    assert.deepEqual(got[0], ok);
  }
  // One byte over: refused at the next() after its 4th header byte, whatever came behind it.
  for (const cut of [1, 2, 3]) {
    const d = new FrameDecoder(max);
    const stream = concat([frame(payload(2, 1)), header(max + 1), payload(50, 2)]);
    assert.equal(drainPushed(d, stream.slice(0, 6 + cut)).length, 1);
    d.push(stream.slice(6 + cut));
    assert.throws(() => d.next(), isCode("FRAME_TOO_LARGE"));
  }
});

Deno.test("FrameDecoder.next() matches a reference decoder over random streams and cuts, frames checked until the next push", () => {
  for (let iter = 0; iter < 400; iter++) {
    const rand = prng(7000 + iter);
    const sizes = [0, 1, 3, 4, 5, 60, 150, 1500, 20_000][iter % 9];
    const frames: Uint8Array[] = [];
    const count = 1 + Math.floor(rand() * 60);
    for (let i = 0; i < count; i++) {
      frames.push(payload(Math.floor(rand() * (sizes + 1)) + (rand() < 0.05 ? 70_000 : 0), i));
    }
    const stream = concat(frames.map(frame));
    const d = new FrameDecoder();
    const readBuf = new Uint8Array(64 * 1024);
    let off = 0;
    let i = 0;
    while (off < stream.length) {
      const n = Math.min(
        1 + Math.floor(rand() * [7, 200, 5000, 65536][iter % 4]),
        stream.length - off,
      );
      readBuf.set(stream.subarray(off, off + n));
      off += n;
      const out = drainPushed(d, readBuf.subarray(0, n));
      for (const f of out) assert.deepEqual(f, frames[i++], `iteration ${iter}`);
      readBuf.fill(0xaa); // the caller reuses its read buffer
    }
    assert.equal(i, frames.length, `iteration ${iter}`);
    assert.equal(d.buffered, 0);
  }
});

Deno.test("FrameDecoder.push(buffer, n) reads the first n bytes only, as push(buffer.subarray(0, n)) does", () => {
  // Past n, the read buffer holds what earlier reads left: frame headers and bytes that would
  // make frames, and a split frame's rest, if the decoder read them.
  const stale = concat([frame(payload(3, 9)), frame(payload(0, 9)), frame(payload(9, 9))]);
  for (let iter = 0; iter < 200; iter++) {
    const rand = prng(9100 + iter);
    const sizes = [0, 1, 4, 60, 150, 1500][iter % 6];
    const frames: Uint8Array[] = [];
    const count = 1 + Math.floor(rand() * 40);
    for (let i = 0; i < count; i++) frames.push(payload(Math.floor(rand() * (sizes + 1)), i));
    const stream = concat(frames.map(frame));
    const d = new FrameDecoder();
    const readBuf = new Uint8Array(8 * 1024);
    let off = 0;
    let i = 0;
    while (off < stream.length) {
      const n = Math.min(1 + Math.floor(rand() * [5, 90, 3000][iter % 3]), stream.length - off);
      for (let k = n; k < readBuf.length; k += stale.length) {
        readBuf.set(stale.subarray(0, readBuf.length - k), k);
      }
      readBuf.set(stream.subarray(off, off + n));
      off += n;
      d.push(readBuf, n);
      assert.ok(d.buffered <= n + HELD_AT_MOST, `iteration ${iter}: ${d.buffered} buffered`);
      for (const f of drain(d)) assert.deepEqual(f, frames[i++], `iteration ${iter}`);
      readBuf.fill(0xaa); // the caller reuses its read buffer
    }
    assert.equal(i, frames.length, `iteration ${iter}`);
    assert.equal(d.buffered, 0);
  }
});

/** Most bytes a decoder holds besides a push: one split frame of the sizes above, with its header. */
const HELD_AT_MOST = 1504;
