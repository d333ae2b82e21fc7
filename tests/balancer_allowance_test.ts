/**
 * The bulk flows' allowance (roles/balancer/allowance.ts) is for clients
 * that read their answers: while a light client is busy, a deep pipeliner
 * that reads gets one request for every eight of the light client's, and
 * one that leaves its answers unread gets none (before: they shared the
 * allowance in turn, so four non-readers took four fifths of it from the
 * reader, and all of it cost the light client). Driven through the
 * dispatcher without sockets, on a clock of the test's; whether a client
 * reads is the test's say (the balancer asks the kernel: wire/send_queue.ts).
 */
import assert from "node:assert/strict";
import { DistError } from "../wire/mod.ts";
import { sizedDispatcher } from "./helpers/dispatcher.ts";

/** A dispatcher whose non-readers are `unreading`, and a light client, active. */
function setup() {
  const unreading = new Set<object>();
  const d = sizedDispatcher({ unread: (flow) => unreading.has(flow) });
  const light = d.conn("10.0.0.1");
  d.answer(d.submit(light, 10));
  return { ...d, unreading, light };
}

Deno.test("Dispatcher: bulk flows that leave their answers unread get no allowance while a light client is busy", () => {
  const { dispatcher, clock, conn, submit, answer, on, unreading, light } = setup();
  try {
    const reader = conn("10.0.1.1");
    const nonReaders = [2, 3, 4, 5].map((i) => conn(`10.0.1.${i}`));
    for (const n of nonReaders) unreading.add(n);
    // Each pipelines 200 requests: past four shares, a bulk flow.
    for (const flow of [reader, ...nonReaders]) {
      for (let i = 0; i < 200; i++) submit(flow, 10);
    }
    const got = new Map<object, number>();
    const settle = () => {
      for (const job of [...on.keys()]) {
        if (job.flow !== light) {
          got.set(job.flow!, (got.get(job.flow!) ?? 0) + 1);
          answer(job);
        }
      }
    };
    settle();
    got.clear();
    // The light client: 160 requests one at a time, each answered at once.
    for (let i = 0; i < 160; i++) {
      clock.advance(1);
      answer(submit(light, 10));
      settle();
    }
    const readerGot = got.get(reader) ?? 0;
    const theirs = nonReaders.map((n) => got.get(n) ?? 0);
    // One for every eight of the light client's: 20, all the reader's.
    assert.ok(readerGot >= 15, `the reader got ${readerGot}, the non-readers ${theirs}`);
    assert.deepEqual(theirs, [0, 0, 0, 0], `the reader got ${readerGot}`);
    // Once the light client is idle past the grace, every bulk flow goes (within its share).
    clock.advance(60);
    dispatcher.pump();
    for (const n of nonReaders) {
      assert.ok([...on.keys()].some((j) => j.flow === n), "a non-reader goes while none is busy");
    }
  } finally {
    dispatcher.close(new DistError("UNAVAILABLE", "done"));
  }
});

Deno.test("Dispatcher: a light client's requests go past the queue while only non-readers wait there", () => {
  const { dispatcher, clock, conn, submit, answer, on, unreading, light } = setup();
  try {
    const nonReader = conn("10.0.1.2");
    unreading.add(nonReader);
    for (let i = 0; i < 200; i++) submit(nonReader, 10);
    for (const job of [...on.keys()]) answer(job);
    // Its first shares went while none waited (four of them: shares.ts); the rest wait.
    const waiting = dispatcher.queued;
    assert.ok(waiting >= 200 - 64, `${waiting} waiting`);
    // Every light request goes at once, and none of the non-reader's goes meanwhile.
    for (let i = 0; i < 40; i++) {
      clock.advance(1);
      const job = submit(light, 10);
      assert.ok(on.has(job), `request ${i} went at once`);
      answer(job);
    }
    assert.equal([...on.keys()].length, 0);
    assert.equal(dispatcher.queued, waiting);
  } finally {
    dispatcher.close(new DistError("UNAVAILABLE", "done"));
  }
});
