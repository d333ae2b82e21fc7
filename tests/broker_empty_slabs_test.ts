/**
 * The queues' slabs (roles/broker/byte_queue.ts) that hold nothing are
 * counted in --max-memory (they are memory the process holds), and the
 * last one of each block size was kept for good: after a burst, empty slabs
 * were counted against the budget and the memory guard cut subscribers for
 * memory no cut could free (broker_memory_kept_test, run after another test
 * in one process: a fresh broker started at 7 MiB of 16 counted, all empty
 * slabs, and the client coming back for its away session was cut, 5 runs
 * of 11 at load 15-30). The guard now gives them back before it cuts anyone.
 */
import assert from "node:assert/strict";
import { BrokerCore } from "../roles/broker/mod.ts";
import { ByteQueue, queueMemory, releaseEmptySlabs } from "../roles/broker/byte_queue.ts";
import { MemoryGuard } from "../roles/broker/memory.ts";
import { FakeSink } from "./helpers/broker_sink.ts";
import { sleep } from "./helpers/raw.ts";

const MIB = 1024 * 1024;

/**
 * A queue of each block size (256 bytes to 64 KiB) that took a block, then
 * emptied: the slab of each size stays, all free (1 MiB each, 9 in all).
 */
function emptySlabs(): void {
  for (let size = 256; size <= 64 * 1024; size *= 2) {
    const q = new ByteQueue();
    q.push(new Uint8Array(size / 2));
    q.clear();
  }
}

Deno.test("releaseEmptySlabs() gives back the slabs no queue holds, the last of a size too", () => {
  releaseEmptySlabs();
  const held = new ByteQueue();
  held.push(Uint8Array.of(1, 2, 3)); // a block of its slab handed out: that slab stays
  const base = queueMemory.bytes;
  emptySlabs();
  assert.ok(queueMemory.bytes >= base + 8 * MIB, "empty slabs stay counted");
  const freed = releaseEmptySlabs();
  assert.ok(freed >= 8 * MIB, `${freed} bytes given back`);
  assert.equal(queueMemory.bytes, base, "what is left is the slab a queue holds");
  assert.deepEqual([...held.shift()!], [1, 2, 3]);
  // Queues go on: a new slab when one is needed.
  const q = new ByteQueue();
  q.push(Uint8Array.of(9));
  assert.deepEqual([...q.shift()!], [9]);
});

Deno.test("MemoryGuard: past --max-memory for empty slabs, they go before any subscriber is cut", async () => {
  releaseEmptySlabs();
  const core = new BrokerCore({ retainBytes: MIB, maxPending: 8 * MIB, maxTopics: 1000 });
  const sink = new FakeSink();
  sink.stalled = true;
  core.subscribe(sink, { topic: "/s" }).sub.release();
  for (let i = 0; i < 100; i++) core.publish("/s/x", i, false, 0);
  emptySlabs();
  // Over by 1 MiB, with 8 MiB or more of empty slabs.
  (core as { maxMemory: number }).maxMemory = core.memoryBytes - MIB;
  const guard = new MemoryGuard(core);
  const stop = guard.watch(10);
  await sleep(100);
  stop();
  assert.equal(guard.shed, 0, "nobody was cut");
  assert.equal(sink.slowError, undefined);
  assert.ok(core.memoryBytes <= core.maxMemory, `${core.memoryBytes} of ${core.maxMemory}`);
});
