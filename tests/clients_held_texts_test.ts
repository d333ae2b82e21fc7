/**
 * HeldTexts (clients/held_texts.ts): the JSON bytes of deliveries waiting
 * for an iterator, decoded a run at a time. Every value comes back as its
 * own text, in order, whatever it holds: non-ASCII text, a broken broker's
 * NUL or invalid UTF-8, runs longer than one decode, and adds between takes.
 */
import assert from "node:assert/strict";
import { HeldTexts } from "../clients/held_texts.ts";
import { connect } from "../clients/mod.ts";
import { DistError, encodeFrame, listen } from "../wire/mod.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

Deno.test("HeldTexts gives back each value's text in order, across runs and interleaved adds", () => {
  const held = new HeldTexts();
  const values: Uint8Array[] = [];
  for (let i = 0; i < 3000; i++) {
    const text = JSON.stringify({ n: i, unit: "°C", s: "日本".repeat(i % 7), e: "😀" });
    values.push(encoder.encode(text));
  }
  // A reused view, as a read buffer is: add copies.
  const scratch = new Uint8Array(1024);
  const add = (v: Uint8Array) => {
    scratch.set(v);
    held.add(scratch.subarray(0, v.length));
    scratch.fill(0x7b);
  };
  let taken = 0;
  for (let i = 0; i < values.length; i++) {
    add(values[i]);
    // Take some now and then: the rest wait across runs and buffer moves.
    if (i % 5 === 4) {
      for (let k = 0; k < 3; k++) assert.equal(held.take(), decoder.decode(values[taken++]));
    }
  }
  assert.equal(held.size, values.length - taken);
  while (held.size > 0) assert.equal(held.take(), decoder.decode(values[taken++]));
  assert.equal(taken, values.length);
});

Deno.test("HeldTexts: a value holding a NUL or invalid UTF-8 (a broken broker's) does not shift the others", () => {
  const held = new HeldTexts();
  const values = [
    encoder.encode('"a"'),
    new Uint8Array([0x22, 0x62, 0x00, 0x63, 0x22]), // "b\0c"
    new Uint8Array([0x22, 0xe2, 0x82, 0x22]), // a cut 3-byte sequence
    encoder.encode('"d"'),
    new Uint8Array([0x00]),
    encoder.encode('{"e":"°"}'),
  ];
  for (const v of values) held.add(v);
  for (const v of values) assert.equal(held.take(), decoder.decode(v));
  assert.equal(held.size, 0);
  // Empty again, it takes more from its start.
  held.add(encoder.encode("[1]"));
  assert.equal(held.take(), "[1]");
});

Deno.test("waiting non-ASCII deliveries are counted as the bytes they wait as, and arrive whole and in order", async () => {
  // A broker's deliveries of non-ASCII text (a Japanese sensor's name): they wait as
  // their UTF-8 bytes, counted as their frames; before, as two-byte text, counted twice.
  const values = Array.from({ length: 50 }, (_, i) => ({ i, name: "温度センサー".repeat(8) }));
  const frames = values.map((v) =>
    encodeFrame(encoder.encode(
      `{"method":"broker.message","params":{"topic":"/t/x","value":${JSON.stringify(v)},"sid":1}}`,
    ))
  );
  const fake = listen({
    host: "127.0.0.1",
    port: 0,
    role: "broker",
    name: "fake",
    onRequest: (method, _params, peer) => {
      if (method === "sys.ping") return { pong: true };
      if (method !== "broker.subscribe") throw new DistError("NOT_FOUND", method);
      setTimeout(() => {
        for (const f of frames) peer.conn.sendRaw(f);
      }, 50);
      return { sid: 1, topic: "/t", topics: [], topic_count: 0 };
    },
  });
  const conn = await connect(`127.0.0.1:${fake.addr.port}`);
  try {
    const sub = await conn.subscribe("/t");
    const deadline = Date.now() + 5000;
    while (sub.waiting < values.length && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.equal(sub.waiting, values.length);
    const frameBytes = frames.reduce((n, f) => n + f.length - 4, 0);
    assert.equal(sub.waitingBytes, frameBytes);
    const got: unknown[] = [];
    for await (const m of sub) {
      got.push(m.value);
      if (got.length === values.length) break;
    }
    assert.deepEqual(got, values);
    assert.equal(sub.waitingBytes, 0);
  } finally {
    conn.close();
    await fake.close(0);
  }
});
