/**
 * The call table's raw calls (the balancer's forwarded requests): kept in
 * slots by id, or in the Map when a slot is still held, and each settled,
 * timed out or failed exactly once.
 */
import assert from "node:assert/strict";
import { CallTable, type RawAnswerSink } from "../wire/calls.ts";
import { Envelope, scanJson } from "../wire/json_envelope.ts";
import { DistError } from "../wire/mod.ts";
import { waitFor } from "./helpers/raw.ts";

class Sink implements RawAnswerSink {
  answers: (string | DistError)[] = [];
  constructor(readonly sentAt = 0) {}
  onAnswer(answer: Envelope | DistError): void {
    this.answers.push(
      answer instanceof DistError
        ? answer
        : new TextDecoder().decode(answer.payload.subarray(answer.resultStart, answer.resultEnd)),
    );
  }
}

function response(id: number, result: number): Envelope {
  const env = new Envelope();
  assert.ok(scanJson(new TextEncoder().encode(JSON.stringify({ id, result })), env));
  return env;
}

Deno.test("1,200 raw calls in flight on one connection (past the slots) are each answered once, out of order", () => {
  const table = new CallTable();
  const calls: { id: number; sink: Sink }[] = [];
  for (let i = 0; i < 1200; i++) {
    const id = table.nextId();
    const sink = new Sink();
    table.waitRaw(id, sink, 60_000);
    calls.push({ id, sink });
  }
  assert.equal(table.size, 1200);
  // Every other one from the end, then the rest from the start.
  const order = [...calls].reverse().filter((_, i) => i % 2 === 0)
    .concat(calls.filter((_, i) => (calls.length - 1 - i) % 2 !== 0));
  for (const { id } of order) assert.ok(table.settleRaw(id, response(id, id * 2)));
  for (const { id, sink } of calls) assert.deepEqual(sink.answers, [String(id * 2)]);
  assert.equal(table.size, 0);
  assert.equal(table.settleRaw(calls[0].id, response(calls[0].id, 0)), false, "answered twice");
  table.failAll(new DistError("UNAVAILABLE", "Closed"));
});

Deno.test("raw calls time out by their deadline, counted from the sink's sentAt when it gives one, and fail once when the connection goes", async () => {
  const table = new CallTable();
  const soon = new Sink(performance.now() - 50); // sent 50 ms ago: 60 ms from then
  const later = new Sink();
  const held = new Sink();
  table.waitRaw(table.nextId(), soon, 60);
  table.waitRaw(table.nextId(), later, 400);
  // 511 more calls so the next id's slot is taken by `soon`'s call... then free it.
  for (let i = 0; i < 510; i++) table.waitRaw(table.nextId(), held, 60_000);
  const wrapped = new Sink();
  table.waitRaw(table.nextId(), wrapped, 60_000); // slot of the first call, still held: the Map
  await waitFor(() => soon.answers.length === 1, 2000, "the first timeout");
  assert.equal((soon.answers[0] as DistError).code, "TIMEOUT");
  assert.equal(later.answers.length, 0, "not before its own deadline");
  await waitFor(() => later.answers.length === 1, 2000, "the second timeout");
  assert.equal((later.answers[0] as DistError).code, "TIMEOUT");
  assert.equal(table.size, 511);
  table.failAll(new DistError("UNAVAILABLE", "Connection closed"));
  assert.equal(held.answers.length, 510);
  assert.ok(held.answers.every((a) => a instanceof DistError && a.code === "UNAVAILABLE"));
  assert.equal(wrapped.answers.length, 1);
  assert.equal(table.size, 0);
});
