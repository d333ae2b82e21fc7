/**
 * The call table of a connection: every call settled by its own answer,
 * timed out or failed once, whether it sits in a slot or, behind an older
 * unanswered call of the same slot, in the overflow.
 */
import assert from "node:assert/strict";
import { CallTable } from "../wire/calls.ts";
import { DistError } from "../wire/errors.ts";

/** The DistError `answer` fails with (an assertion error if it does not). */
async function failure(answer: Promise<unknown>): Promise<DistError> {
  try {
    await answer;
  } catch (err) {
    assert.ok(err instanceof DistError);
    return err;
  }
  throw new Error("expected the call to fail");
}

/** Makes `n` calls on `table` (ids from its counter); returns their ids and promises. */
function calls(table: CallTable, n: number, timeoutMs = 10_000, signal?: AbortSignal) {
  return Array.from({ length: n }, () => {
    const id = table.nextId();
    return { id, answer: table.wait(id, "echo", true, timeoutMs, signal) };
  });
}

Deno.test("1,000 calls in flight (most past a slot's first) each get their own answer, in any order", async () => {
  const table = new CallTable();
  const made = calls(table, 1000);
  assert.deepEqual(table.size, 1000);
  const order = made.map((c) => c.id).sort((a, b) => ((a * 7919) % 1009) - ((b * 7919) % 1009));
  for (const id of order) {
    assert.deepEqual(table.settle(id, { result: id * 2, error: undefined, by: `s${id}` }), true);
  }
  assert.deepEqual(table.settle(order[0], { result: 0, error: undefined, by: undefined }), false);
  for (const { id, answer } of made) {
    assert.deepEqual(await answer, { result: id * 2, by: `s${id}` });
  }
  assert.deepEqual(table.size, 0);
});

Deno.test("calls in slots and in the overflow time out, and a late answer finds none", async () => {
  const table = new CallTable();
  const made = calls(table, 600, 30);
  for (const { answer } of made) {
    assert.equal((await failure(answer)).code, "TIMEOUT");
  }
  assert.deepEqual(table.size, 0);
  assert.deepEqual(
    table.settle(made[599].id, { result: 1, error: undefined, by: undefined }),
    false,
  );
});

Deno.test("failAll fails every call once; an abort fails its call alone", async () => {
  const table = new CallTable();
  const first = calls(table, 300);
  const abort = new AbortController();
  const aborted = calls(table, 1, 10_000, abort.signal)[0];
  abort.abort();
  assert.deepEqual((await failure(aborted.answer)).code, "UNAVAILABLE");
  assert.deepEqual(table.size, 300);
  table.failAll(new DistError("UNAVAILABLE", "Connection closed (test)"));
  for (const { answer } of first) {
    assert.deepEqual((await failure(answer)).message, "Connection closed (test)");
  }
  assert.deepEqual(table.size, 0);
  // The table takes calls again afterwards, in the same slots.
  const again = calls(table, 2);
  table.settle(again[1].id, { result: "b", error: undefined, by: undefined });
  table.settle(again[0].id, { result: "a", error: undefined, by: undefined });
  assert.deepEqual((await again[0].answer as { result: unknown }).result, "a");
  assert.deepEqual((await again[1].answer as { result: unknown }).result, "b");
});

Deno.test("an answer with id 0 (a free slot's mark) settles nothing: raw and plain calls still time out and fail", async () => {
  const table = new CallTable();
  const got: string[] = [];
  for (let n = 0; n < 3; n++) {
    table.waitRaw(table.nextId(), {
      onAnswer: (a) => got.push(a instanceof DistError ? a.code : "answer"),
    }, 50);
  }
  const plain = calls(table, 2, 50);
  for (let n = 0; n < 5; n++) {
    assert.equal(table.settleRaw(0, {} as Parameters<CallTable["settleRaw"]>[1]), false);
    assert.equal(table.settle(0, { result: "x", error: undefined, by: undefined }), false);
  }
  assert.equal(table.size, 5);
  for (const { answer } of plain) assert.equal((await failure(answer)).code, "TIMEOUT");
  while (got.length < 3) await new Promise((r) => setTimeout(r, 10));
  assert.deepEqual(got, ["TIMEOUT", "TIMEOUT", "TIMEOUT"]);
  assert.equal(table.size, 0);
});
