/**
 * The balancer writes a forwarded request or answer in one copy when its
 * frame is as clients and servers write it (roles/balancer/raw_frames.ts):
 * the bytes must be exactly what the member-by-member writers of
 * wire/passthrough.ts give, and any other frame must be left to them.
 */
import assert from "node:assert/strict";

import { Envelope, scanJson } from "../wire/json_envelope.ts";
import { OutBuffer } from "../wire/frame.ts";
import { writeAnswerAs, writeRequestAs } from "../wire/passthrough.ts";
import {
  keep,
  keptAt,
  plainRequest,
  writePlainAnswer,
  writePlainFrame,
  writePlainRequest,
} from "../roles/balancer/raw_frames.ts";

const utf8 = new TextEncoder();

function scanned(text: string): Envelope {
  const env = new Envelope();
  assert(scanJson(utf8.encode(text), env), `scans: ${text}`);
  return env;
}

const PLAIN_REQUESTS = [
  '{"id":1,"method":"echo","params":"' + "x".repeat(64) + '"}',
  '{"id":"abc","method":"echo"}',
  '{"id":77,"method":"add","params":[1,2,{"a":"é\\n"}]}',
  '{"id":3,"method":"m","params":{}}',
  '{"id":"abcdef","method":"put","params":"' + "v".repeat(3000) + '"}',
];
const OTHER_REQUESTS = [
  '{ "id":1,"method":"echo","params":1}',
  '{"id":1, "method":"echo","params":1}',
  '{"id":1,"method":"echo", "params":1}',
  '{"id":1,"method":"echo","params":1 }',
  '{"id":1,"params":1,"method":"echo"}',
  '{"method":"echo","id":1,"params":1}',
  '{"id":1,"method":"echo","params":1,"idem":false}',
  '{"id":1,"method":"echo","params":1,"idem":true}',
  '{"id":1,"method":"echo","params":1,"trace":"t"}',
  '{"id":1,"x":2,"method":"echo"}',
];

Deno.test("a plain request goes out in one copy, byte for byte what writeRequestAs writes", () => {
  for (const text of PLAIN_REQUESTS) {
    const env = scanned(text);
    assert(plainRequest(env), text);
    for (const id of [1, 9, 10, 99, 12345, 2 ** 40]) {
      const a = new OutBuffer(0);
      const b = new OutBuffer(0);
      writeRequestAs(a, env, id, 1 << 20);
      const end = (env.paramsStart < 0 ? env.methodEnd : env.paramsEnd) + 1;
      assert(writePlainRequest(b, id, env.payload, env.idEnd, end, 1 << 20));
      assert.deepEqual(
        b.bytes.subarray(0, b.length),
        a.bytes.subarray(0, a.length),
        `${text} as ${id}`,
      );
    }
  }
});

/** An output buffer that already holds a frame of other bytes (which must stay as they are). */
function used(): OutBuffer {
  const out = new OutBuffer(0);
  out.reserve(32);
  out.bytes.fill(0xaa, 0, 32);
  out.length = 32;
  return out;
}

Deno.test("a plain request's first send copies from the read's own frame, shorter or longer ids alike", () => {
  for (const text of PLAIN_REQUESTS) {
    const env = scanned(text);
    for (const id of [1, 9, 10, 99, 12345, 2 ** 40]) {
      const a = used();
      const b = used();
      writeRequestAs(a, env, id, 1 << 20);
      assert(writePlainFrame(b, id, env.payload, env.idEnd, 1 << 20));
      assert.deepEqual(
        b.bytes.subarray(0, b.length),
        a.bytes.subarray(0, a.length),
        `${text} as ${id}`,
      );
    }
    const size = env.payload.length - env.idEnd + '{"id":1'.length;
    const none = used();
    assert(!writePlainFrame(none, 1, env.payload, env.idEnd, size - 1));
    assert.equal(none.length, 32);
  }
});

Deno.test("any other request is left to writeRequestAs", () => {
  for (const text of OTHER_REQUESTS) assert(!plainRequest(scanned(text)), text);
});

Deno.test("a plain request past the frame limit is not written (writeRequestAs refuses it)", () => {
  const env = scanned(PLAIN_REQUESTS[0]);
  const out = new OutBuffer(0);
  const size = env.payload.length;
  assert(!writePlainRequest(out, 1, env.payload, env.idEnd, size, size - 1));
  assert.deepEqual(out.length, 0);
  assert(writePlainRequest(out, 1, env.payload, env.idEnd, size, size));
});

Deno.test("a plain answer goes back in one copy under the client's id; others are left", () => {
  const answers = [
    '{"id":5,"result":"' + "y".repeat(64) + '","by":"s1"}',
    '{"id":5,"result":[1,2]}',
    '{"id":123456,"result":true,"by":"s3"}',
    '{"id":123456,"result":"' + "z".repeat(3000) + '","by":"s3"}',
    '{"id":12,"error":{"code":"NOT_FOUND","message":"no"},"by":"s2"}',
    '{"id":12,"error":{"code":"INTERNAL","message":"x"}}',
  ];
  const others = [
    '{"id":5,"result":1,"by":7}',
    '{"id":5, "result":1}',
    '{"id":5,"result":1,"by":"s1" }',
    '{"by":"s1","id":5,"result":1}',
    '{"id":5,"result":1,"extra":true}',
  ];
  // Client ids shorter and longer than the backend's (the answer's bytes move down or not).
  for (const client of ['{"id":1,"method":"m"}', '{"id":"req-7","method":"m"}']) {
    const request = scanned(client);
    for (const text of [...answers, ...others]) {
      const answer = scanned(text);
      const a = used();
      const b = used();
      writeAnswerAs(a, answer, request, 1 << 20);
      const plain = writePlainAnswer(b, answer, request, 1 << 20);
      assert.deepEqual(plain, answers.includes(text), text);
      if (plain) {
        assert.deepEqual(b.bytes.subarray(0, b.length), a.bytes.subarray(0, a.length), text);
      } else assert.deepEqual(b.length, 32);
    }
  }
});

Deno.test("kept request bytes are a copy that outlives the buffer they came from", () => {
  const read = utf8.encode(PLAIN_REQUESTS[0]);
  const kept = keep(read);
  const at = keptAt();
  const copy = kept.slice(at, at + read.length);
  read.fill(0);
  assert.deepEqual(kept.subarray(at, at + read.length), copy);
  assert.deepEqual(new TextDecoder().decode(copy), PLAIN_REQUESTS[0]);
  const big = new Uint8Array(5000).fill(7);
  const own = keep(big);
  assert.deepEqual([keptAt(), own.length, own[4999]], [0, 5000, 7]);
});
