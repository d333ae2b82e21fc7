/**
 * Every request pays its bytes (roles/balancer/pacing.ts, hostile35 H12):
 * whatever the size of many sources' requests, a small request finds at
 * most a bounded number of bytes ahead of it on its backend's connection,
 * and goes at once. Sixteen addresses keeping 16 echoes of 4,000 bytes each
 * (just under the pacing line, PACED_BYTES) put 512 KiB on each backend
 * ahead of it, and a legitimate client's p99 went to 284 ms (27 ms at 4,200
 * bytes). Driven through the dispatcher without sockets, on a clock of the
 * test's.
 */
import assert from "node:assert/strict";
import type { Job } from "../roles/balancer/mod.ts";
import { DistError } from "../wire/mod.ts";
import { sizedDispatcher, type SizedJob } from "./helpers/dispatcher.ts";

/** What a small request may find ahead of it on its backend's connection. */
const AHEAD = 256 * 1024;

/** A dispatcher over two backends of `capacity` slots (tests/helpers/dispatcher.ts). */
function setup(capacity = 128) {
  /** Bytes on its backend ahead of each job, when it was sent. */
  const ahead = new Map<SizedJob, number>();
  const d = sizedDispatcher({
    capacity,
    queueLimit: 100_000,
    queueTimeoutMs: 60_000,
    sending(job, backend) {
      let n = 0;
      for (const [j, b] of on) if (b === backend) n += j.size;
      ahead.set(job, n);
    },
  });
  const { dispatcher, clock, conn, submit, on } = d;
  const answer = (which: (job: SizedJob) => boolean) => {
    for (const job of [...on.keys()]) if (which(job)) d.answer(job);
  };
  const bytesOn = () => [...on.keys()].reduce((n, j) => n + j.size, 0);
  /**
   * Sixteen addresses, one connection each, keeping 16 requests of `size`
   * outstanding, as clients that read every answer do; `round()` answers a
   * third of those on the backends, and they send more.
   */
  const attack = (size: number) => {
    const attackers = new Set(Array.from({ length: 16 }, (_, i) => conn(`10.0.1.${i}`)));
    const waiting = new Map([...attackers].map((a) => [a, 0]));
    const keep = () => {
      for (const a of attackers) {
        let mine = 0;
        for (const j of on.keys()) if (j.flow === a) mine++;
        for (let i = mine + waiting.get(a)!; i < 16; i++) {
          const job = submit(a, size);
          if (!on.has(job)) waiting.set(a, waiting.get(a)! + 1);
        }
      }
    };
    keep();
    let n = 0;
    const round = () => {
      const before = new Set(on.keys());
      answer((j) => attackers.has(j.flow!) && j.id % 3 === n % 3);
      for (const j of on.keys()) {
        if (!before.has(j)) waiting.set(j.flow!, waiting.get(j.flow!)! - 1);
      }
      keep();
      clock.advance(1);
      n++;
    };
    return { attackers, round };
  };
  return { dispatcher, clock, conn, submit, answer, on, ahead, bytesOn, attack };
}

for (const size of [1_000, 3_000, 4_000, 4_200, 16_000]) {
  Deno.test(`Dispatcher: sixteen addresses' requests of ${size} bytes leave a small request at most 256 KiB ahead of it`, () => {
    const { dispatcher, conn, submit, answer, on, ahead, attack } = setup();
    const legit = conn("10.0.0.1");
    // Active first: a connection alone is not bounded.
    submit(legit, 60);
    answer(() => true);
    const { round } = attack(size);
    // The small client keeps a few requests on the backends (1,000 a second, each a few ms).
    const mine: Job[] = [];
    let worst = 0;
    for (let r = 0; r < 60; r++) {
      const small = submit(legit, 60);
      assert.ok(on.has(small), `round ${r}: the small request waits`);
      worst = Math.max(worst, ahead.get(small)!);
      // Once a small request was seen, the others' keep off the backend it goes to.
      if (r >= 10) {
        assert.ok(ahead.get(small)! <= 16 * 1024, `round ${r}: ${ahead.get(small)} bytes ahead`);
      }
      mine.push(small);
      if (mine.length > 4) {
        const oldest = mine.shift();
        answer((j) => j === oldest);
      }
      round();
    }
    assert.ok(worst <= AHEAD, `${worst} bytes ahead of a small request`);
    dispatcher.close(new DistError("UNAVAILABLE", "done"));
  });
}

Deno.test("Dispatcher: small RPC of many connections is not held by the byte bound", () => {
  const { dispatcher, conn, submit, on } = setup(1_024);
  // 250 connections of 4 requests of 100 bytes each: all go.
  const many = Array.from({ length: 250 }, (_, i) => conn(`10.0.3.${i}`));
  for (const f of many) for (let i = 0; i < 4; i++) submit(f, 100);
  assert.equal(on.size, 1_000);
  dispatcher.close(new DistError("UNAVAILABLE", "done"));
});

Deno.test("Dispatcher: past the byte bound a connection with nothing on the backends sends a request larger than its part within a few rounds of answers", () => {
  const { dispatcher, conn, submit, answer, on, attack } = setup();
  submit(conn("10.0.0.1"), 60);
  answer(() => true);
  const { round } = attack(4_000);
  for (let r = 0; r < 5; r++) round();
  // Larger than any connection's part of the bound.
  const big = submit(conn("10.0.0.9"), 30_000);
  let rounds = 0;
  for (; rounds < 20 && !on.has(big); rounds++) round();
  assert.ok(rounds <= 3, `a 30,000-byte request waited for ${rounds} rounds of answers`);
  dispatcher.close(new DistError("UNAVAILABLE", "done"));
});
