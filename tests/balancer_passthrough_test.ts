/**
 * The byte pass-through of wire/passthrough.ts (scan, re-frame) and its
 * hooks in Peer (onRawRequest, callRaw, answerRaw), as the balancer uses
 * them: a relay that forwards JSON requests without decoding them.
 */
import assert from "node:assert/strict";
import {
  DistError,
  Envelope,
  jsonCodec,
  OutBuffer,
  type Peer,
  type RawCall,
  type RawReply,
  scanJson,
  writeAnswerAs,
  writeRequestAs,
} from "../wire/mod.ts";
import { connect, isCode, server } from "./helpers/rpc.ts";
import { jsonFrame, prng, rawHandshake, RawReader, writeAll } from "./helpers/raw.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

function scan(text: string): Envelope | undefined {
  const env = new Envelope();
  return scanJson(enc.encode(text), env) ? env : undefined;
}

const span = (env: Envelope, start: number, end: number) =>
  dec.decode(env.payload.subarray(start, end));

/** The payload of the one frame in `out`. */
function payloadOf(out: OutBuffer): string {
  const view = new DataView(out.bytes.buffer, out.bytes.byteOffset);
  const len = view.getUint32(0);
  assert.equal(out.length, 4 + len);
  return dec.decode(out.bytes.subarray(4, 4 + len));
}

Deno.test("scanJson() finds a request's id, method, params and idem", () => {
  const env = scan(' { "id" : 17, "method":"echo", "params": {"text":"a}\\"b"}, "idem": false } ')!;
  assert.ok(env.isRequest);
  assert.equal(env.id, 17);
  assert.equal(env.method, "echo");
  assert.equal(span(env, env.paramsStart, env.paramsEnd), '{"text":"a}\\"b"}');
  assert.equal(env.idempotent, false);
  assert.equal(scan('{"id":"a-1","method":"x","idem":0}')!.idempotent, true);
  assert.equal(scan('{"id":"a-1","method":"x"}')!.id, "a-1");
});

Deno.test("scanJson() finds a response's result or error and a string by", () => {
  const ok = scan('{"id":3,"result":[1,{"a":"]"}],"by":"s1"}')!;
  assert.ok(ok.isResponse);
  assert.equal(span(ok, ok.resultStart, ok.resultEnd), '[1,{"a":"]"}]');
  assert.equal(span(ok, ok.byStart, ok.byEnd), '"s1"');
  const err = scan('{"id":4,"error":{"code":"BAD_REQUEST","message":"x"},"by":7}')!;
  assert.ok(err.isResponse);
  assert.equal(err.byStart, -1, "a by that is not a string is ignored");
  assert.equal(scan('{"id":4,"by":"s"}')!.isResponse, false, "neither result nor error");
});

Deno.test("scanJson() leaves to the decoder what it does not read itself", () => {
  const refused = [
    "",
    "[1,2]",
    '"text"',
    '{"id":1,"method":"echo"',
    '{"id":1,"method":"echo"} x',
    '{"i\\u0064":1,"method":"echo"}',
    '{"id":1,"id":2,"method":"echo"}',
    '{"id":1,"method":"echo","method":"add"}',
    '{"id":1.5,"method":"echo"}',
    '{"id":1e3,"method":"echo"}',
    '{"id":12345678901234567,"method":"echo"}',
    '{"id":null,"method":"echo"}',
    '{"id":01,"method":"echo"}',
    '{"id":"\\u0061","method":"echo"}',
    '{"id":1,"method":"\\u0065cho"}',
    '{"id":1,"method":"écho"}',
    `{"id":"${"x".repeat(257)}","method":"echo"}`,
    '{"id":1,"method":"echo","params":{"a":"unterminated}',
    '{"id":1,"method":"echo","params":@}',
    '{"id":1 "method":"echo"}',
  ];
  for (const text of refused) assert.equal(scan(text), undefined, text);
});

Deno.test("scanJson() refuses what the strict decoder refuses: bad syntax, escapes, UTF-8, depth", () => {
  const bad = [
    '{"id":1,"method":"echo","params":[1,,2]}',
    '{"id":1,"method":"echo","params":{"a":tru}}',
    '{"id":1,"method":"echo","params":{"a":1,}}',
    '{"id":1,"method":"echo","params":[1 2]}',
    '{"id":1,"method":"echo","params":{"a" 1}}',
    '{"id":1,"method":"echo","params":{1:2}}',
    '{"id":1,"method":"echo","params":01}',
    '{"id":1,"method":"echo","params":1.}',
    '{"id":1,"method":"echo","params":-}',
    '{"id":1,"method":"echo","params":1e}',
    '{"id":1,"method":"echo","params":"\\x"}',
    '{"id":1,"method":"echo","params":"\\u12"}',
    '{"id":1,"method":"echo","params":"tab\there"}',
    '{"id":1,"method":"echo","params":[1]]}',
    '{"id":1,"method":"echo","params":NaN}',
    `{"id":1,"method":"echo","params":${"[".repeat(64)}${"]".repeat(64)}}`,
  ];
  for (const text of bad) assert.equal(scan(text), undefined, text);
  const deep = `{"id":1,"method":"echo","params":${"[".repeat(63)}${"]".repeat(63)}}`;
  assert.ok(scan(deep), "63 levels inside the message are allowed, as the decoder allows");
  const utf8 = [
    [0xc0, 0xaf], // overlong
    [0xe0, 0x80, 0xaf], // overlong
    [0xed, 0xa0, 0x80], // surrogate
    [0xf4, 0x90, 0x80, 0x80], // above U+10FFFF
    [0x80], // lone continuation
    [0xe2, 0x82], // truncated
  ];
  for (const bytes of utf8) {
    const head = enc.encode('{"id":1,"method":"echo","params":"');
    const payload = new Uint8Array([...head, ...bytes, ...enc.encode('"}')]);
    assert.equal(scanJson(payload, new Envelope()), false, `bytes ${bytes}`);
  }
  assert.ok(scan('{"id":1,"method":"echo","params":"é€😀\\u00e9\\n"}'), "valid UTF-8 and escapes");
});

Deno.test("scanJson() refuses lone surrogate escapes, valid JSON that no codec can carry", () => {
  const lone = [
    '"\\ud800"',
    '"a\\uDBFFb"',
    '"\\udc00"',
    '"\\udc00\\ud800"',
    '"\\ud800\\u0041"',
    '"\\ud800\\\\udc00"',
    '"\\ud800\\n"',
    '{"\\ud800":1}',
    '["ok",{"k":["\\uDFFF"]}]',
  ];
  for (const params of lone) {
    const text = `{"id":1,"method":"echo","params":${params}}`;
    assert.equal(scan(text), undefined, text);
  }
  const pair = scan('{"id":1,"method":"echo","params":"\\ud83d\\ude00 \\uD800\\uDC00"}')!;
  assert.ok(pair, "a surrogate pair is one code point");
  assert.equal(
    JSON.parse(span(pair, pair.paramsStart, pair.paramsEnd)),
    "\u{1F600} \u{10000}",
  );
});

Deno.test("scanJson() accepts a string with escapes exactly when it is well-formed Unicode (fuzz)", () => {
  const random = prng(23);
  const pieces = [
    "\\ud800",
    "\\udbff",
    "\\uD83D",
    "\\udc00",
    "\\uDFFF",
    "\\ude00",
    "\\u0041",
    "\\u00e9",
    "\\uffff",
    "\\\\",
    "\\n",
    '\\"',
    "u",
    "d800",
    "x",
    "é",
    "😀",
  ];
  let accepted = 0;
  let refused = 0;
  for (let round = 0; round < 3000; round++) {
    let text = "";
    for (let k = Math.floor(random() * 6); k >= 0; k--) {
      text += pieces[Math.floor(random() * pieces.length)];
    }
    const where = Math.floor(random() * 3);
    const params = where === 0 ? `"${text}"` : where === 1 ? `["a","${text}"]` : `{"${text}":0}`;
    const bytes = enc.encode(`{"id":1,"method":"echo","params":${params}}`);
    const wellFormed = JSON.stringify(JSON.parse(params)) !== undefined &&
      [JSON.parse(`"${text}"`) as string].every((s) => s.isWellFormed());
    const env = new Envelope();
    const scanned = scanJson(bytes, env);
    assert.equal(scanned, wellFormed, params);
    if (scanned) {
      accepted++;
      // Whatever the scanner accepts, the decoder reads, to the same value.
      const decoded = jsonCodec.decode(bytes) as { params: unknown };
      assert.deepEqual(JSON.parse(span(env, env.paramsStart, env.paramsEnd)), decoded.params);
    } else refused++;
  }
  assert.ok(accepted > 300 && refused > 300, `both kinds generated (${accepted}/${refused})`);
});

Deno.test("scanJson() accepts only what the JSON decoder reads, and forwards it unchanged (fuzz)", () => {
  const random = prng(11);
  const seeds = [
    '{"id":1,"method":"echo","params":{"text":"héllo \\"x\\"","n":[1,-2.5e3,true,null]}}',
    '{"id":"a","method":"sum","params":[1,2,3],"idem":false}',
    '{"id":7,"result":{"a":[{"b":"c"}]},"by":"s1"}',
  ];
  let accepted = 0;
  for (let round = 0; round < 3000; round++) {
    const bytes = enc.encode(seeds[round % seeds.length]);
    for (let k = 1 + Math.floor(random() * 3); k > 0; k--) {
      bytes[Math.floor(random() * bytes.length)] = Math.floor(random() * 256);
    }
    const env = new Envelope();
    if (!scanJson(bytes, env)) continue;
    let decoded: Record<string, unknown>;
    try {
      decoded = jsonCodec.decode(bytes) as Record<string, unknown>;
    } catch (err) {
      throw new Error(`scanJson accepted what the decoder refuses: ${dec.decode(bytes)}: ${err}`);
    }
    accepted++;
    if (!env.isRequest) continue;
    const out = new OutBuffer(0);
    writeRequestAs(out, env, 99, 1 << 20);
    const forwarded = jsonCodec.decode(out.bytes.subarray(4, out.length)) as Record<
      string,
      unknown
    >;
    assert.equal(forwarded.method, decoded.method);
    assert.deepEqual(forwarded.params, decoded.params);
  }
  assert.ok(accepted > 100, `some mutants are still valid (${accepted})`);
});

Deno.test("writeRequestAs() and writeAnswerAs() give what a decoder reads as the original with new ids", () => {
  const random = prng(5);
  const pick = <T>(xs: T[]) => xs[Math.floor(random() * xs.length)];
  const strings = ["", "x", 'q"uote', "back\\slash", "}]{[", "ünï€😀", "\n\t", "a,b:c"];
  const value = (depth: number): unknown => {
    const kind = depth > 3 ? random() * 4 : random() * 6;
    if (kind < 1) return pick(strings);
    if (kind < 2) return Math.floor(random() * 2000) - 1000 + pick([0, 0.5, 1e-7]);
    if (kind < 3) return pick([true, false, null]);
    if (kind < 4) return pick(strings);
    if (kind < 5) return Array.from({ length: Math.floor(random() * 4) }, () => value(depth + 1));
    return Object.fromEntries(
      Array.from({ length: Math.floor(random() * 4) }, () => [pick(strings), value(depth + 1)]),
    );
  };
  for (let i = 0; i < 500; i++) {
    const params = value(0);
    const idem = random() < 0.3 ? false : undefined;
    const request = { id: i, method: pick(["echo", "add", "sys.x"]), params, idem };
    const text = JSON.stringify(request, null, random() < 0.5 ? 1 : 0);
    const env = scan(text)!;
    assert.ok(env, text);
    const out = new OutBuffer(16);
    writeRequestAs(out, env, 1000 + i, 1 << 20);
    const forwarded = JSON.parse(payloadOf(out));
    const expected: Record<string, unknown> = { id: 1000 + i, method: request.method, params };
    if (idem === false) expected.idem = false;
    assert.deepEqual(forwarded, JSON.parse(JSON.stringify(expected)));

    const answer = JSON.stringify(
      random() < 0.5
        ? { id: 1000 + i, result: value(0), by: pick(strings) }
        : { id: 1000 + i, error: { code: "BAD_REQUEST", message: pick(strings) } },
    );
    const ans = scan(answer)!;
    const back = new OutBuffer(0);
    writeAnswerAs(back, ans, env, 1 << 20);
    assert.deepEqual(JSON.parse(payloadOf(back)), { ...JSON.parse(answer), id: i });
  }
});

Deno.test("writeRequestAs() refuses a frame over the limit and appends nothing", () => {
  const env = scan(`{"id":1,"method":"echo","params":{"text":"${"x".repeat(100)}"}}`)!;
  const out = new OutBuffer(0);
  assert.throws(() => writeRequestAs(out, env, 1, 64), isCode("FRAME_TOO_LARGE"));
  assert.equal(out.length, 0);
});

/**
 * A relay on port 0 that forwards every JSON request to `backend` as bytes,
 * as the balancer does, and answers with the backend's answer as bytes.
 */
function relayTo(backend: Peer, timeoutMs = 2000) {
  const seen = { raw: 0, decoded: 0 };
  const relay = server({
    onRequest: () => {
      seen.decoded++;
      return "decoded";
    },
    onRawRequest: (client, request) => {
      seen.raw++;
      const req = new Envelope();
      scanJson(request.payload.slice(), req);
      const call: RawCall & RawReply = {
        answer: undefined as Envelope | undefined,
        writeRequest: (out, id, maxFrame) => writeRequestAs(out, req, id, maxFrame),
        writeAnswer(out, maxFrame) {
          writeAnswerAs(out, this.answer!, req, maxFrame);
        },
        onAnswer(answer) {
          if (answer instanceof DistError) return client.answerError(req.id!, answer);
          this.answer = answer;
          client.answerRaw(req.id!, this);
        },
      } as RawCall & RawReply & { answer?: Envelope };
      if (!backend.callRaw(call, timeoutMs)) {
        client.answerError(req.id!, new DistError("UNAVAILABLE", "backend gone"));
      }
      return true;
    },
  });
  return { relay, seen };
}

Deno.test("Peer pass-through: requests and answers cross a relay as bytes, errors and by included", async () => {
  const backendServer = server({
    by: "backend-1",
    onRequest: (method, params, _peer, meta) => {
      if (method === "fail") throw new DistError("BAD_REQUEST", "Bad on purpose");
      if (method === "slow") return new Promise((r) => setTimeout(() => r(params), 50));
      return { method, params, idempotent: meta.idempotent };
    },
  });
  const backend = await connect(backendServer);
  const { relay, seen } = relayTo(backend);
  const client = await connect(relay);
  try {
    const res = await client.request("echo", { text: "hi" }, { idempotent: false });
    assert.deepEqual(res.result, {
      method: "echo",
      params: { text: "hi" },
      idempotent: false,
    });
    assert.equal(res.by, "backend-1");
    await assert.rejects(client.call("fail", {}), isCode("BAD_REQUEST"));
    const many = await Promise.all(
      Array.from({ length: 200 }, (_, i) => client.call(i % 2 ? "slow" : "echo", [i])),
    );
    assert.equal(many.length, 200);
    assert.deepEqual(many[2], { method: "echo", params: [2], idempotent: true });
    assert.deepEqual(many[3], [3]);
    assert.equal(seen.decoded, 0);
    assert.equal(seen.raw, 202);
  } finally {
    client.close();
    backend.close();
    await relay.close(0);
    await backendServer.close(0);
  }
});

Deno.test("Peer pass-through: a frame the scanner leaves alone is decoded and handled as usual", async () => {
  const backendServer = server({ onRequest: () => "from backend" });
  const backend = await connect(backendServer);
  const { relay, seen } = relayTo(backend);
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: relay.addr.port });
  try {
    const reader = new RawReader(conn);
    await rawHandshake(conn, reader);
    await writeAll(conn, jsonFrame({ id: 1.5, method: "x" }));
    assert.equal((await reader.json())?.error !== undefined, true, "a bad id is still refused");
    await writeAll(conn, frameOf('{"id":"\\u0041","method":"x"}'));
    assert.deepEqual(await reader.json(), { id: "A", result: "decoded" });
    assert.equal(seen.decoded, 1);
  } finally {
    conn.close();
    backend.close();
    await relay.close(0);
    await backendServer.close(0);
  }
});

function frameOf(text: string): Uint8Array {
  const bytes = enc.encode(text);
  const out = new Uint8Array(4 + bytes.length);
  new DataView(out.buffer).setUint32(0, bytes.length);
  out.set(bytes, 4);
  return out;
}

Deno.test("Peer.callRaw() reports a timeout and a lost connection as local errors", async () => {
  let hang: () => void = () => {};
  const backendServer = server({
    onRequest: () => new Promise<void>((resolve) => hang = resolve),
  });
  const backend = await connect(backendServer);
  const outcomes: string[] = [];
  const env = scan('{"id":1,"method":"hang"}')!;
  const call: RawCall = {
    writeRequest: (out, id, maxFrame) => writeRequestAs(out, env, id, maxFrame),
    onAnswer: (a) => outcomes.push(a instanceof DistError ? a.code : "answer"),
  };
  try {
    assert.ok(backend.callRaw(call, 50));
    await new Promise((r) => setTimeout(r, 200));
    assert.deepEqual(outcomes, ["TIMEOUT"]);
    assert.ok(backend.callRaw(call, 5000));
    await backendServer.close(0);
    await backend.closed;
    assert.deepEqual(outcomes, ["TIMEOUT", "UNAVAILABLE"]);
    assert.equal(backend.callRaw(call), false);
  } finally {
    hang();
    backend.close();
    await backendServer.close(0);
  }
});
