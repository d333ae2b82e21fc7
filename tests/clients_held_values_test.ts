/**
 * HeldValues (clients/held_values.ts): the JSON bytes of deliveries waiting
 * to be taken, parsed a run at a time. Every value comes back as it would
 * parsed alone, in order, whatever it holds: non-ASCII text, runs longer
 * than one parse, adds between takes; and a broken broker's value that is
 * not JSON (a NUL, a cut string or array, two values in one) throws its own
 * error when taken and does not shift or swallow the others.
 */
import assert from "node:assert/strict";
import { HeldValues } from "../clients/held_values.ts";
import { connect } from "../clients/mod.ts";
import { DistError, encodeFrame, listen } from "../wire/mod.ts";

const encoder = new TextEncoder();

Deno.test("HeldValues gives back each value parsed, in order, across runs and interleaved adds", () => {
  const held = new HeldValues();
  const values: unknown[] = [];
  for (let i = 0; i < 3000; i++) {
    values.push(
      i % 100 === 50
        // Keys written with escapes: a run holding one goes to parseJson's careful parser.
        ? { x: 1, "\n": i, "\\": "k", 'a"b': [i] }
        : i % 4 === 3
        ? `text ${i} "quoted"\n°`
        : { n: i, unit: "°C", s: "日本".repeat(i % 7), e: "😀", a: [i, null, true] },
    );
  }
  // A reused view, as a read buffer is: add copies.
  const scratch = new Uint8Array(1024);
  const add = (v: unknown) => {
    const bytes = encoder.encode(JSON.stringify(v));
    scratch.set(bytes);
    held.add(scratch.subarray(0, bytes.length));
    scratch.fill(0x7b);
  };
  let taken = 0;
  for (let i = 0; i < values.length; i++) {
    add(values[i]);
    // Take some now and then: the rest wait across runs and buffer moves.
    if (i % 5 === 4) {
      for (let k = 0; k < 3; k++) assert.deepEqual(held.take(), values[taken++]);
    }
  }
  assert.equal(held.size, values.length - taken);
  while (held.size > 0) assert.deepEqual(held.take(), values[taken++]);
  assert.equal(taken, values.length);
});

Deno.test("HeldValues: a value that is not JSON (a broken broker's) throws when taken and does not shift the others", () => {
  // Each of these, parsed with its neighbours as one array, would take in or
  // give away a neighbour's place: a cut array closed by the next value, two
  // values in one, a string left open, nothing, a NUL.
  const values: [Uint8Array, unknown][] = [
    [encoder.encode('"a"'), "a"],
    [encoder.encode("[1"), NOT_JSON],
    [encoder.encode("2]"), NOT_JSON],
    [encoder.encode("3,4"), NOT_JSON],
    [encoder.encode('"open'), NOT_JSON],
    [encoder.encode('{"b":"°"}'), { b: "°" }],
    [encoder.encode(""), NOT_JSON],
    [new Uint8Array([0x22, 0x62, 0x00, 0x63, 0x22]), NOT_JSON], // "b<NUL>c"
    [encoder.encode('"b\\u0000c"'), "b\u0000c"],
    [encoder.encode("true"), true],
  ];
  const held = new HeldValues();
  for (const [bytes] of values) held.add(bytes);
  for (const [bytes, value] of values) {
    if (value === NOT_JSON) {
      assert.throws(() => held.take(), SyntaxError, new TextDecoder().decode(bytes));
    } else assert.deepEqual(held.take(), value);
  }
  assert.equal(held.size, 0);
  // Empty again, it takes more from its start. A run that parses, but into fewer
  // values than it holds (`[[1,2]]` for "[1" and "2]"), is taken value by value.
  for (const text of ["[1", "2]", '{"c":3}']) held.add(encoder.encode(text));
  assert.throws(() => held.take(), SyntaxError);
  assert.throws(() => held.take(), SyntaxError);
  assert.deepEqual(held.take(), { c: 3 });
  assert.equal(held.size, 0);
});

/** Marks a value expected to throw when taken. */
const NOT_JSON = Symbol("not JSON");

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
