/**
 * The launcher's output queue (launch/output_queue.ts) on a sink that takes
 * a few bytes at a time, slowly: pushing never waits; lines come whole and
 * in order; past an instance's share its lines are dropped and counted in
 * one line, the other instances' and the launcher's own lines kept.
 */
import assert from "node:assert/strict";
import { OutputQueue, type Sink } from "../launch/output_queue.ts";

/** A sink that takes at most 7 bytes a write, each write a timer turn later. */
function slowSink(): Sink & { text: () => string } {
  const chunks: Uint8Array[] = [];
  return {
    write: async (bytes) => {
      await new Promise((r) => setTimeout(r, 0));
      const n = Math.min(7, bytes.length);
      chunks.push(bytes.slice(0, n));
      return n;
    },
    text: () => new TextDecoder().decode(new Uint8Array(chunks.flatMap((c) => [...c]))),
  };
}

Deno.test("OutputQueue: a slow sink never blocks a push; lines whole and in order; a flood past its share is dropped and counted", async () => {
  const sink = slowSink();
  const queue = new OutputQueue({
    sink,
    perSource: 100,
    total: 1000,
    dropped: (name, count) => `dist up: ${count} lines of ${name} dropped\n`,
  });
  const t0 = performance.now();
  const kept: boolean[] = [];
  for (let i = 0; i < 50; i++) kept.push(queue.push("flood", `flood | line ${i}\n`));
  queue.push(undefined, "dist up: own line\n");
  queue.push("quiet", "quiet | hello\n");
  assert.ok(performance.now() - t0 < 50, "pushes do not wait for the sink");
  const taken = kept.filter(Boolean).length;
  assert.ok(taken >= 5 && taken < 10, `${taken} kept of 50 (100 bytes)`);
  await queue.flush(10_000);
  const lines = sink.text().split("\n").slice(0, -1);
  assert.deepEqual(lines, [
    ...Array.from({ length: taken }, (_, i) => `flood | line ${i}`),
    "dist up: own line",
    "quiet | hello",
    `dist up: ${50 - taken} lines of flood dropped`,
  ]);
});

Deno.test("OutputQueue: a sink that fails (a closed pipe) drops what follows, and flush returns", async () => {
  const queue = new OutputQueue({
    sink: { write: () => Promise.reject(new Error("Broken pipe")) },
    dropped: () => "",
  });
  assert.equal(queue.push("a", "a | 1\n"), true);
  await queue.flush(1000);
  assert.equal(queue.push("a", "a | 2\n"), false);
  assert.equal(queue.push(undefined, "dist up: 3\n"), false);
});

Deno.test("OutputQueue: flush gives up after its time when the reader never reads", async () => {
  const queue = new OutputQueue({
    sink: { write: () => new Promise<number>(() => {}) },
    dropped: () => "",
  });
  queue.push(undefined, "dist up: never read\n");
  const t0 = performance.now();
  await queue.flush(200);
  assert.ok(performance.now() - t0 < 2000);
});
