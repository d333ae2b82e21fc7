/** The one backoff and abortable sleep every redialer uses (wire/backoff.ts). */
import assert from "node:assert/strict";
import { Backoff, Nap, sleep } from "../wire/mod.ts";

Deno.test("Backoff.next() doubles from min up to max, and reset() starts over", () => {
  const b = new Backoff({ min: 100, max: 1000 });
  assert.deepEqual([1, 2, 3, 4, 5, 6].map(() => b.next()), [100, 200, 400, 800, 1000, 1000]);
  assert.equal(b.current, 1000);
  b.reset();
  assert.equal(b.next(), 100);
});

Deno.test("Backoff.next() spreads each wait by the jitter, around the doubling sequence", () => {
  const b = new Backoff({ min: 100, max: 400, jitter: 0.2 });
  for (let round = 0; round < 50; round++) {
    b.reset();
    for (const base of [100, 200, 400, 400]) {
      const wait = b.next();
      assert.ok(wait >= base * 0.8 && wait <= base * 1.2, `${wait} around ${base}`);
    }
  }
});

Deno.test("sleep() resolves at once on abort, and at once when already aborted", async () => {
  const abort = new AbortController();
  const t0 = performance.now();
  const slept = sleep(60_000, abort.signal);
  setTimeout(() => abort.abort(), 10);
  await slept;
  await sleep(60_000, abort.signal);
  assert.ok(performance.now() - t0 < 5_000);
});

Deno.test("Nap.wake() ends the nap in progress only; the next nap sleeps its time", async () => {
  const nap = new Nap();
  nap.wake(); // nothing in progress: no effect on the next nap
  let woke = false;
  const first = nap.sleep(60_000).then(() => woke = true);
  await sleep(5);
  assert.equal(woke, false);
  nap.wake();
  await first;
  const t0 = performance.now();
  await nap.sleep(30);
  assert.ok(performance.now() - t0 >= 25);
  const abort = new AbortController();
  const third = nap.sleep(60_000, abort.signal);
  abort.abort();
  await third;
});
