import assert from "node:assert/strict";
import {
  type Codec,
  DEFAULT_MAX_FRAME,
  DistError,
  encodeFrame,
  FrameDecoder,
  jsonCodec,
  MAX_FRAME_LIMIT,
  msgpackCodec,
  OutBuffer,
} from "../wire/mod.ts";
import { concat, frame, header, prng } from "./helpers/raw.ts";
import { isCode } from "./helpers/rpc.ts";

/** Random payloads of mixed sizes: empty, tiny, medium and some large ones. */
function randomPayloads(rand: () => number, count: number, large: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let i = 0; i < count; i++) {
    const pick = rand();
    const size = pick < 0.15
      ? 0
      : pick < 0.5
      ? Math.floor(rand() * 8)
      : pick < 0.9
      ? Math.floor(rand() * 2000)
      : pick < 0.97
      ? Math.floor(rand() * 70_000)
      : large;
    const p = new Uint8Array(size);
    const salt = (rand() * 256) | 0;
    for (let j = 0; j < size; j++) p[j] = (j * 31 + salt + (j >> 8)) & 0xff;
    out.push(p);
  }
  return out;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * Feeds `stream` to a decoder in the given chunk sizes the way FramedConn
 * does: through one reused read buffer that is scribbled over after next()
 * returned null. Each frame is checked when it comes out.
 */
function feed(stream: Uint8Array, sizes: () => number, expected: Uint8Array[]): void {
  const d = new FrameDecoder();
  const readBuf = new Uint8Array(128 * 1024);
  let i = 0;
  let off = 0;
  while (off < stream.length) {
    const n = Math.min(Math.max(1, sizes()), stream.length - off, readBuf.length);
    readBuf.set(stream.subarray(off, off + n));
    off += n;
    d.push(readBuf.subarray(0, n));
    let f: Uint8Array | null;
    while ((f = d.next()) !== null) {
      assert.ok(i < expected.length, "more frames than were sent");
      assert.ok(sameBytes(f, expected[i]), `frame ${i} differs`);
      i++;
    }
    readBuf.fill(0xaa, 0, n); // the caller reuses its buffer
  }
  assert.equal(i, expected.length, "frames missing");
  assert.equal(d.buffered, 0);
}

Deno.test("FrameDecoder.next() returns null on a partial header", () => {
  const d = new FrameDecoder();
  assert.equal(d.next(), null);
  d.push(new Uint8Array([0, 0, 0]));
  assert.equal(d.next(), null);
  assert.equal(d.buffered, 3);
  d.push(new Uint8Array([2, 7]));
  assert.equal(d.next(), null);
  d.push(new Uint8Array([9]));
  assert.deepEqual(d.next(), new Uint8Array([7, 9]));
  assert.equal(d.next(), null);
});

Deno.test("FrameDecoder.next() returns frames fed one byte at a time intact and in order", () => {
  const rand = prng(1);
  const payloads = randomPayloads(rand, 60, 200_000);
  payloads.push(new Uint8Array(0), new Uint8Array(0), new Uint8Array([1]));
  feed(concat(payloads.map(encodeFrame)), () => 1, payloads);
});

Deno.test("FrameDecoder.next() returns frames fed in random splits intact and in order", () => {
  for (let iter = 0; iter < 300; iter++) {
    const rand = prng(1000 + iter);
    const maxSplit = [3, 17, 300, 5000, 70_000][iter % 5];
    // Frames up to the 1 MiB limit, but not fed 2 bytes at a time.
    const large = maxSplit < 1000 ? 30_000 : DEFAULT_MAX_FRAME;
    const payloads = randomPayloads(rand, 1 + Math.floor(rand() * 30), large);
    const stream = concat(payloads.map(encodeFrame));
    feed(stream, () => 1 + Math.floor(rand() * maxSplit), payloads);
  }
});

Deno.test("FrameDecoder.next() accepts a frame of exactly maxFrame bytes", () => {
  const d = new FrameDecoder(10);
  d.push(frame(new Uint8Array(10).fill(3)));
  assert.deepEqual(d.next(), new Uint8Array(10).fill(3));
  d.push(header(11));
  assert.throws(() => d.next(), isCode("FRAME_TOO_LARGE"));
});

Deno.test("FrameDecoder.next() throws FRAME_TOO_LARGE as soon as the 4 header bytes arrive", () => {
  const d = new FrameDecoder();
  const h = header(0xfffffff0);
  for (let i = 0; i < 3; i++) {
    d.push(h.subarray(i, i + 1));
    assert.equal(d.next(), null, `after ${i + 1} header bytes`);
  }
  d.push(h.subarray(3));
  // No payload byte has been sent: the length alone is refused.
  assert.throws(() => d.next(), isCode("FRAME_TOO_LARGE"));
  assert.equal(d.buffered, 4);
});

Deno.test("FrameDecoder.next() returns the frames before an oversized header, then throws", () => {
  const d = new FrameDecoder(100);
  d.push(concat([frame("ok"), header(101), new Uint8Array(50)]));
  assert.deepEqual(d.next(), new TextEncoder().encode("ok"));
  assert.throws(() => d.next(), isCode("FRAME_TOO_LARGE"));
});

Deno.test("FrameDecoder.next() allocates nothing for an oversized length prefix", () => {
  // Control: 8 MiB of a 32 MiB frame within the limit are kept, which shows in
  // V8's external memory...
  const ok = new FrameDecoder(MAX_FRAME_LIMIT);
  let before = Deno.memoryUsage().external;
  ok.push(concat([header(32 * 1024 * 1024), new Uint8Array(8 * 1024 * 1024)]));
  assert.equal(ok.next(), null);
  assert.ok(Deno.memoryUsage().external - before >= 8 * 1024 * 1024, "control allocated");
  // ...a prefix that only claims 32 MiB costs little until the bytes come...
  const claim = new FrameDecoder(MAX_FRAME_LIMIT);
  before = Deno.memoryUsage().external;
  claim.push(concat([header(32 * 1024 * 1024), new Uint8Array([1])]));
  assert.equal(claim.next(), null);
  assert.ok(Deno.memoryUsage().external - before < 1024 * 1024, "a bare claim allocated");
  // ...while one over the limit is refused with nothing allocated.
  const d = new FrameDecoder(MAX_FRAME_LIMIT);
  before = Deno.memoryUsage().external;
  d.push(concat([header(MAX_FRAME_LIMIT + 1), new Uint8Array([1])]));
  assert.throws(() => d.next(), isCode("FRAME_TOO_LARGE"));
  const d2 = new FrameDecoder();
  d2.push(header(0xfffffff0));
  assert.throws(() => d2.next(), isCode("FRAME_TOO_LARGE"));
  assert.ok(Deno.memoryUsage().external - before < 1024 * 1024, "nothing large allocated");
});

Deno.test("FrameDecoder.next() keeps frames intact when the caller reuses its read buffer", () => {
  const a = new Uint8Array(300).map((_, i) => i & 0xff);
  const b = new Uint8Array(70_000).map((_, i) => (i * 7) & 0xff);
  const c = new Uint8Array(0);
  const stream = concat([frame(a), frame(b), frame(c), frame(a)]);
  for (const cut of [1, 3, 4, 5, 303, 304, 305, 306, 600, 70_310, 70_312, stream.length - 1]) {
    const d = new FrameDecoder();
    const readBuf = stream.slice(0, cut);
    d.push(readBuf);
    const got: Uint8Array[] = [];
    let f: Uint8Array | null;
    while ((f = d.next()) !== null) got.push(f.slice());
    readBuf.fill(0xee); // overwrite the pushed chunk, as a reused read buffer would be
    d.push(stream.slice(cut));
    while ((f = d.next()) !== null) got.push(f.slice());
    assert.deepEqual(got, [a, b, c, a], `cut at ${cut}`);
  }
});

// Regression test: frame.ts FrameDecoder.#keep() (line 99) compacts the owned buffer in
// place from inside next(), overwriting frames that next() returned earlier
// from that buffer, although the class promises views stay valid until the
// next push(). Fix: in #keep only copy out of a borrowed chunk
// (`if (this.#borrowed) this.#ensureOwn(frameBytes)`); push() already makes room.
Deno.test({
  name: "FrameDecoder.next() views stay valid until the next push()",

  fn() {
    const f1 = new Uint8Array(10).fill(1);
    const f2 = new Uint8Array(11).fill(2);
    const stream = concat([frame(f1), frame(f2)]);
    const d = new FrameDecoder();
    d.push(stream.slice(0, 6));
    assert.equal(d.next(), null);
    d.push(stream.slice(6, 21)); // the rest of f1, then part of f2
    const first = d.next();
    assert.deepEqual(first, f1);
    assert.equal(d.next(), null); // no push in between...
    assert.deepEqual(first, f1); // ...yet first now starts with f2's bytes
  },
});

Deno.test("encodeFrame() writes a big-endian length then the payload", () => {
  const payload = new Uint8Array(0x010203).fill(5);
  const f = encodeFrame(payload);
  assert.deepEqual(f.subarray(0, 4), new Uint8Array([0, 1, 2, 3]));
  assert.equal(f.length, 4 + payload.length);
  assert.deepEqual(encodeFrame(new Uint8Array(0)), new Uint8Array(4));
  const d = new FrameDecoder();
  d.push(f);
  assert.deepEqual(d.next(), payload);
});

Deno.test("OutBuffer.writeFrame() grows past its capacity and round-trips through FrameDecoder", () => {
  const rand = prng(7);
  const payloads = randomPayloads(rand, 200, 300_000);
  const out = new OutBuffer(8);
  for (const p of payloads) out.writeFrame(p);
  assert.deepEqual(out.bytes.subarray(0, out.length), concat(payloads.map(encodeFrame)));
  feed(out.bytes.subarray(0, out.length), () => 1 + Math.floor(rand() * 9000), payloads);
});

Deno.test("OutBuffer.setHeader() writes lengths of 2^31 and more unsigned", () => {
  const out = new OutBuffer(4);
  out.setHeader(0, 0x80000001);
  assert.deepEqual(out.bytes, new Uint8Array([0x80, 0, 0, 1]));
});

Deno.test("OutBuffer.reset() empties the buffer, keeps a large one while it is used at its size, and shrinks it after a burst", () => {
  const out = new OutBuffer();
  out.writeFrame(new Uint8Array(2 * 1024 * 1024));
  const room = out.bytes;
  out.reset();
  assert.equal(out.length, 0);
  // Burst after burst of the same size: the same room, not regrown from nothing.
  out.writeFrame(new Uint8Array(2 * 1024 * 1024 - 100));
  assert.ok(out.bytes === room);
  out.reset();
  // A small write after the burst: the large room goes at the next reset.
  out.writeFrame(new Uint8Array(1000));
  out.reset();
  assert.equal(out.length, 0);
  assert.ok(out.bytes.length <= 1024 * 1024);
  // Up to 1 MiB is kept whatever it held.
  out.writeFrame(new Uint8Array(256 * 1024));
  out.writeFrame(new Uint8Array(10));
  const small = out.bytes;
  out.reset();
  out.writeFrame(new Uint8Array(10));
  out.reset();
  assert.ok(out.bytes === small);
});

// ---- codecs: one conformance suite for each ----

const MESSAGES: unknown[] = [
  { id: 1, method: "echo", params: { text: "hello" } },
  { id: 2, result: { sum: 42, list: [1, 2.5, -3, null, true, false] }, by: "server-1" },
  { id: 3, error: { code: "NOT_FOUND", message: "no such thing", data: { key: "k" } } },
  { id: null, error: { code: "BAD_REQUEST", message: "bad" } },
  { method: "broker.message", params: { sid: 9, topic: "/a/b", value: "x" } },
  { method: "ping" },
  { id: "str-id", method: "ünïcødé ✓ 😀", params: { "é": ["\u0000", "\ud83d\ude00", ""] } },
  { id: 4, result: { nested: { deep: { deeper: [[[]], {}] } }, big: 2 ** 53 - 1, neg: -1e-7 } },
  { id: 5, result: "x".repeat(100_000) },
  {},
];

for (const codec of [jsonCodec, msgpackCodec] as Codec[]) {
  const name = `${codec.name}Codec`;

  Deno.test(`${name}.writeFrame() then decode() round-trips every message shape`, () => {
    const out = new OutBuffer(16);
    for (const m of MESSAGES) codec.writeFrame(out, m, DEFAULT_MAX_FRAME);
    const d = new FrameDecoder();
    d.push(out.bytes.subarray(0, out.length));
    for (const m of MESSAGES) {
      const payload = d.next();
      assert.ok(payload !== null);
      assert.deepEqual(codec.decode(payload), m);
    }
    assert.equal(d.next(), null);
  });

  Deno.test(`${name}.decode() throws BAD_REQUEST on invalid bytes`, () => {
    const bad = codec.name === "json"
      ? [[0x7b], [0xff, 0xfe, 0x22], [0x22, 0x61], [], [0x7b, 0x7d, 0x7d]]
      : [[0xc1], [0x92, 0x01], [0xa5, 0x61], [], [0x01, 0x02]];
    for (const bytes of bad) {
      assert.throws(() => codec.decode(new Uint8Array(bytes)), isCode("BAD_REQUEST"), `${bytes}`);
    }
  });

  Deno.test(`${name}.writeFrame() over maxFrame throws FRAME_TOO_LARGE and appends nothing`, () => {
    const out = new OutBuffer(16);
    codec.writeFrame(out, { id: 1, result: "first" }, 100);
    const before = out.bytes.slice(0, out.length);
    assert.throws(
      () => codec.writeFrame(out, { id: 2, result: "y".repeat(200) }, 100),
      isCode("FRAME_TOO_LARGE"),
    );
    assert.deepEqual(out.bytes.subarray(0, out.length), before);
    codec.writeFrame(out, { id: 3, result: "after" }, 100);
    const d = new FrameDecoder();
    d.push(out.bytes.subarray(0, out.length));
    assert.deepEqual(codec.decode(d.next()!), { id: 1, result: "first" });
    assert.deepEqual(codec.decode(d.next()!), { id: 3, result: "after" });
    assert.equal(d.next(), null);
  });

  Deno.test(`${name}.writeFrame() accepts a payload of exactly maxFrame bytes`, () => {
    const probe = new OutBuffer();
    codec.writeFrame(probe, { s: "z".repeat(500) }, DEFAULT_MAX_FRAME);
    const size = probe.length - 4;
    codec.writeFrame(new OutBuffer(), { s: "z".repeat(500) }, size);
    assert.throws(
      () => codec.writeFrame(new OutBuffer(), { s: "z".repeat(500) }, size - 1),
      isCode("FRAME_TOO_LARGE"),
    );
  });

  Deno.test(`${name}.writeFrame() throws BAD_REQUEST on a value it cannot encode`, () => {
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    const out = new OutBuffer();
    assert.throws(() => codec.writeFrame(out, cyclic, DEFAULT_MAX_FRAME), isCode("BAD_REQUEST"));
    assert.equal(out.length, 0);
  });
}

Deno.test("msgpackCodec.decode() returns binary values that survive reuse of the payload", () => {
  const out = new OutBuffer();
  msgpackCodec.writeFrame(out, { bin: new Uint8Array([1, 2, 3]) }, DEFAULT_MAX_FRAME);
  const payload = out.bytes.subarray(4, out.length);
  const msg = msgpackCodec.decode(payload) as { bin: Uint8Array };
  payload.fill(0);
  assert.deepEqual(msg.bin, new Uint8Array([1, 2, 3]));
});

// Regression test: codec.ts jsonCodec.writeFrame() (lines 37, 46) uses JSON.stringify's
// result without checking it: for undefined (or a function) that result is
// undefined and `text.length` throws a TypeError instead of BAD_REQUEST.
// Fix: throw DistError BAD_REQUEST when `text === undefined`.
Deno.test({
  name: "jsonCodec.writeFrame() throws BAD_REQUEST for undefined",

  fn() {
    assert.throws(
      () => jsonCodec.writeFrame(new OutBuffer(), undefined, DEFAULT_MAX_FRAME),
      isCode("BAD_REQUEST"),
    );
  },
});

Deno.test("jsonCodec.decodeAll() decodes a read's frames like decode() does, one by one", () => {
  const enc = new TextEncoder();
  const payloads = [
    enc.encode('{"id":1,"result":"plain ascii"}'),
    enc.encode('{"id":2,"result":"caf\u00e9 \u2603 \ud83d\ude00"}'), // valid non-ASCII
    new Uint8Array([0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xff, 0x22, 0x7d]), // {"a":"<0xff>"}
    enc.encode('{"id":3,'), // not JSON
    // Length prefixes with bytes above 0x7f: 200 bytes, and 0xC3A9 (a valid "é" in UTF-8).
    enc.encode(JSON.stringify({ id: 4, result: "x".repeat(200 - 20) })),
    enc.encode(JSON.stringify({ id: 5, result: "y".repeat(0xc3a9 - 20) })),
    enc.encode('{"id":6,"result":"\ufffd is fine when sent"}'),
    enc.encode('{"id":7,"result":"last"}'),
  ];
  assert.equal(payloads[4].length, 200);
  assert.equal(payloads[5].length, 0xc3a9);
  const stream = concat(payloads.map((p) => frame(p)));
  const decoder = new FrameDecoder(1 << 20);
  decoder.push(stream);
  const frames: Uint8Array[] = [];
  for (let f; (f = decoder.next()) !== null;) frames.push(f);
  assert.equal(frames.length, payloads.length);

  const strict = (p: Uint8Array) => {
    try {
      return jsonCodec.decode(p);
    } catch (err) {
      return err;
    }
  };
  // Batches of every length and start position, so each frame meets each neighbour.
  for (let from = 0; from < frames.length; from++) {
    for (let to = from + 1; to <= frames.length; to++) {
      const got = jsonCodec.decodeAll(frames.slice(from, to));
      const want = frames.slice(from, to).map(strict);
      assert.equal(got.length, want.length);
      for (let i = 0; i < got.length; i++) {
        if (want[i] instanceof DistError) {
          assert.ok(got[i] instanceof DistError, `frame ${from + i}: ${JSON.stringify(got[i])}`);
          assert.equal((got[i] as DistError).code, "BAD_REQUEST");
        } else {
          assert.deepEqual(got[i], want[i], `frame ${from + i}`);
        }
      }
    }
  }
});
