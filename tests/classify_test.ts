/**
 * classify(): what one decoded message is, as a table (wire protocol v1 of
 * DESIGN.md). Each row: the message, then what the Peer acts on.
 */
import assert from "node:assert/strict";
import { classify, MAX_ID_LENGTH, MAX_METHOD_LENGTH } from "../wire/classify.ts";
import { DistError, RefusedMessage } from "../wire/mod.ts";

type Row = [what: string, msg: unknown, expected: Record<string, unknown>];

const long = (n: number) => "x".repeat(n);
const BAD_ID = /A request id must be a safe integer or a string of at most 256 chars/;
const BAD_METHOD = /A method must be a string of at most 256 chars/;
const NEEDS = /A message needs a method \(request\) or an id \(response\)/;

const ROWS: Row[] = [
  // Requests: a method and a usable id.
  ["a request", { id: 1, method: "echo", params: { text: "hi" } }, {
    kind: "request",
    id: 1,
    method: "echo",
    params: { text: "hi" },
    idempotent: true,
  }],
  ["a request with a string id", { id: "a", method: "add", params: [1, 2] }, {
    kind: "request",
    id: "a",
    params: [1, 2],
  }],
  ["a request marked idem: false", { id: 2, method: "add", idem: false }, {
    kind: "request",
    idempotent: false,
  }],
  ["idem other than false is idempotent", { id: 2, method: "add", idem: 0 }, {
    kind: "request",
    idempotent: true,
  }],
  ["the longest string id", { id: long(MAX_ID_LENGTH), method: "m" }, { kind: "request" }],
  ["the longest method", { id: 1, method: long(MAX_METHOD_LENGTH) }, { kind: "request" }],
  // Notifications: a method and no id member at all.
  ["a notification", { method: "ping" }, { kind: "notification", method: "ping", id: null }],
  ["a notification with params", { method: "broker.publish", params: { topic: "/a" } }, {
    kind: "notification",
    params: { topic: "/a" },
  }],
  // Requests that cannot be used: answered, by their id when it is usable.
  ["id null with a method (not a notification)", { id: null, method: "m" }, {
    kind: "invalid",
    id: null,
    problem: BAD_ID,
  }],
  ["an id too long", { id: long(MAX_ID_LENGTH + 1), method: "m" }, {
    kind: "invalid",
    problem: BAD_ID,
  }],
  ["a fractional id", { id: 1.5, method: "m" }, { kind: "invalid", problem: BAD_ID }],
  ["an unsafe integer id", { id: 2 ** 53, method: "m" }, { kind: "invalid", problem: BAD_ID }],
  ["a method that is not a string", { id: 7, method: 42 }, {
    kind: "invalid",
    id: 7,
    problem: BAD_METHOD,
  }],
  ["a method too long", { id: "r", method: long(MAX_METHOD_LENGTH + 1) }, {
    kind: "invalid",
    id: "r",
    problem: BAD_METHOD,
  }],
  ["a bad method in a notification", { method: ["x"] }, {
    kind: "invalid",
    id: null,
    problem: BAD_METHOD,
  }],
  // Responses: a numeric id and no method.
  ["a result", { id: 3, result: 7, by: "server-1" }, {
    kind: "response",
    id: 3,
    result: 7,
    error: undefined,
    by: "server-1",
    problem: undefined,
  }],
  ["a null result", { id: 3, result: null }, { kind: "response", result: null }],
  ["an error", { id: 4, error: { code: "TIMEOUT", message: "late" } }, {
    kind: "response",
    error: { code: "TIMEOUT", message: "late" },
  }],
  ["a by that is not a string is dropped", { id: 3, result: 1, by: 5 }, {
    kind: "response",
    by: undefined,
  }],
  ["an answer with neither result nor error", { id: 5 }, {
    kind: "response",
    error: { code: "INTERNAL", message: "Malformed response: no result and no error" },
    problem: NEEDS,
  }],
  // Reports: an error about no request in particular.
  ["a report with id null", { id: null, error: { code: "FRAME_TOO_LARGE", message: "big" } }, {
    kind: "report",
    error: { code: "FRAME_TOO_LARGE", message: "big" },
  }],
  ["a report with no id", { error: { code: "BAD_REQUEST", message: "no" } }, { kind: "report" }],
  // Nothing usable.
  ["an array", [1, 2], { kind: "invalid", problem: /A message must be an object/ }],
  ["a string", "hello", { kind: "invalid", problem: /A message must be an object/ }],
  ["null", null, { kind: "invalid" }],
  ["an empty object", {}, { kind: "invalid", problem: NEEDS }],
  ["a string id with a result", { id: "s", result: 1 }, { kind: "invalid", problem: NEEDS }],
  ["a method undefined and params only", { params: 1 }, { kind: "invalid", problem: NEEDS }],
  // What the codec refused (RefusedMessage carries the id and whether it was a request).
  ["an undecodable frame", new DistError("BAD_REQUEST", "Invalid JSON"), {
    kind: "invalid",
    id: null,
    problem: /Invalid JSON/,
  }],
  ["a refused request with an id", new RefusedMessage("Lone surrogate", { id: 9, method: "m" }), {
    kind: "invalid",
    id: 9,
    problem: /Lone surrogate/,
  }],
  ["a refused request with a bad id", new RefusedMessage("Lone", { id: [1], method: "m" }), {
    kind: "invalid",
    id: null,
  }],
  ["a refused answer fails its call", new RefusedMessage("Lone surrogate", { id: 11 }), {
    kind: "response",
    id: 11,
    error: { code: "INTERNAL", message: "Unreadable answer: Lone surrogate" },
    problem: undefined,
  }],
  ["a refused answer with a string id", new RefusedMessage("Lone", { id: "x" }), {
    kind: "invalid",
    id: null,
  }],
];

for (const [what, msg, expected] of ROWS) {
  Deno.test(`classify(): ${what} is ${expected.kind}`, () => {
    const m = classify(msg);
    for (const [key, want] of Object.entries(expected)) {
      const got = (m as unknown as Record<string, unknown>)[key];
      if (want instanceof RegExp) {
        assert.ok(got instanceof DistError, `${key} is a DistError`);
        assert.equal(got.code, "BAD_REQUEST");
        assert.match(got.message, want);
      } else {
        assert.deepEqual(got, want, key);
      }
    }
  });
}

Deno.test("classify() reuses its output and forgets the last message", () => {
  const out = classify({ id: 1, method: "m", params: 1, idem: false });
  assert.equal(classify({ method: "n" }, out), out);
  assert.equal(out.kind, "notification");
  assert.equal(out.id, null);
  assert.equal(out.params, undefined);
  assert.equal(out.idempotent, true);
  classify({ id: 2, result: 3, by: "b" }, out);
  classify({ id: 3, error: { code: "X", message: "m" } }, out);
  assert.equal(out.result, undefined);
  assert.equal(out.by, undefined);
});
