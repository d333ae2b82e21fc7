/**
 * The broker's byte queues (a slow subscriber's pending deliveries) against
 * a plain array: any mix of pushes, shifts, drops, fits and clears over
 * many queues sharing the slabs keeps each queue's records, in order, and
 * gives every byte of memory back once they are empty.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { ByteQueue, queueMemory } from "../roles/broker/byte_queue.ts";

type Op =
  | { op: "push"; q: number; len: number; fill: number }
  | { op: "shift" | "drop" | "fit" | "clear"; q: number };

const op: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 5,
    arbitrary: fc.record({
      op: fc.constant("push" as const),
      q: fc.nat(5),
      // Mostly small records (slab blocks), sometimes past a block (an array of its own).
      len: fc.oneof({ weight: 8, arbitrary: fc.nat(300) }, fc.nat(80_000)),
      fill: fc.nat(255),
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      op: fc.constantFrom("shift" as const, "drop" as const, "fit" as const),
      q: fc.nat(5),
    }),
  },
  fc.record({ op: fc.constant("clear" as const), q: fc.nat(5) }),
);

Deno.test("broker byte queues: records in order across shared slabs, all memory back when empty", () => {
  const base = queueMemory.bytes;
  fc.assert(
    fc.property(fc.array(op, { maxLength: 300 }), (ops) => {
      const queues = Array.from({ length: 6 }, () => new ByteQueue());
      const models: Uint8Array[][] = Array.from({ length: 6 }, () => []);
      for (const o of ops) {
        const q = queues[o.q], m = models[o.q];
        if (o.op === "push") {
          const record = new Uint8Array(o.len);
          for (let i = 0; i < o.len; i++) record[i] = (o.fill + i) & 255;
          q.push(record);
          m.push(record);
        } else if (o.op === "shift") {
          const got = q.shift();
          const want = m.shift();
          assert.deepEqual(got === undefined ? undefined : [...got], want && [...want]);
        } else if (o.op === "drop") {
          assert.equal(q.drop(), m.length === 0 ? -1 : m.shift()!.length);
        } else if (o.op === "fit") {
          q.fit();
        } else {
          q.clear();
          m.length = 0;
        }
        assert.equal(q.length, m.length);
        assert.equal(q.bytes, m.reduce((n, r) => n + r.length, 0));
      }
      // What is left comes out whole and in order.
      for (let k = 0; k < queues.length; k++) {
        for (const want of models[k]) assert.deepEqual([...queues[k].shift()!], [...want]);
        assert.equal(queues[k].shift(), undefined);
      }
      // One empty slab per block size may stay; nothing else.
      assert(queueMemory.bytes - base <= 9 * 1024 * 1024, `${queueMemory.bytes - base} left`);
    }),
    { numRuns: 200 },
  );
});

Deno.test("a full drop-oldest byte queue keeps one buffer however often it wraps (a quarter free after it grows)", () => {
  // The bench's stalled subscriber: small deliveries, the oldest dropped past about 8 MB, just
  // under a power of two (8 MiB). Growing to `used + need` rounded up gave the same 8 MiB, so every
  // wrap (every few hundred deliveries) moved the records to a new 8 MiB array: gigabytes of
  // garbage per 500,000 deliveries, and the bench's peak RSS 190-340 MiB where 104 had been measured.
  const q = new ByteQueue();
  const record = new Uint8Array(128).fill(7);
  const bound = 8_126_000;
  const buffers = new Set<ArrayBufferLike>();
  for (let i = 0; i < 400_000; i++) {
    q.push(record);
    while (q.bytes > bound) q.drop();
    if (i > 100_000 && i % 1000 === 0) {
      // A record's view is of the queue's buffer (read it, then put it back at the end).
      const view = q.shift()!;
      buffers.add(view.buffer);
      q.push(view.slice());
    }
  }
  assert.equal(buffers.size, 1, `${buffers.size} buffers while full`);
  q.clear();
});
