/**
 * A paced request that waits for its pace goes once time has paid it
 * (roles/balancer/pacing.ts, shares.ts): its wake-up is not lost behind
 * requests a backend sits on, nor behind the shares' one timer set for
 * later. Before, a client of 40 KB echoes beside three sleeping requests of
 * 60 KB and twenty idle chatterers (hostile37 K5) had its next request wait
 * for the shares' 50 ms timer (or the next chatterer's answer) whenever it
 * came back quicker than its 40 KB were earned (0.15 ms): 0.63× its rate
 * unattacked, p99 53 ms. Driven through the dispatcher without sockets, on
 * the real clock and timers.
 */
import assert from "node:assert/strict";
import { DistError } from "../wire/mod.ts";
import { turnClock } from "../wire/turn.ts";
import { Shares } from "../roles/balancer/shares.ts";
import { sizedDispatcher, type SizedJob } from "./helpers/dispatcher.ts";
import { sleep } from "./helpers/raw.ts";

/** Waits until `job` is on a backend (at most `ms`): how long it waited (ms). */
async function sent(on: Map<SizedJob, unknown>, job: SizedJob, ms = 1000): Promise<number> {
  const t0 = performance.now();
  while (!on.has(job) && performance.now() - t0 < ms) await sleep(0.5);
  return performance.now() - t0;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

Deno.test("Dispatcher: a 40 KB request waiting for its pace goes when paid, beside requests a backend sits on", async () => {
  // The balancer's clock: read once per stretch of synchronous work.
  const { dispatcher, conn, submit, answer, on } = sizedDispatcher({
    now: turnClock(() => performance.now()),
  });
  try {
    // Three connections, each with one request of 60,000 bytes the backends sit on.
    for (const i of [2, 3, 4]) submit(conn(`10.0.0.${i}`), 60_000);
    // Read by now: they no longer count as bytes ahead of anyone (unread.ts).
    await sleep(150);
    const idler = conn("10.0.1.1");
    const legit = conn("10.0.2.1");
    const waits: number[] = [];
    for (let i = 0; i < 12; i++) {
      // A chatterer's small request, answered at once: pacing holds.
      answer(submit(idler, 10));
      // The next 40 KB request as soon as the last was answered (quicker than time pays it).
      const job = submit(legit, 40_000);
      waits.push(await sent(on, job));
      assert.ok(on.has(job), "it went");
      answer(job);
    }
    // Before: most waited the shares' 50 ms timer (51–53 ms).
    assert.ok(median(waits) < 15, `waits ${waits.map((w) => w.toFixed(1)).join(", ")} ms`);
  } finally {
    dispatcher.close(new DistError("UNAVAILABLE", "done"));
  }
});

Deno.test("Shares: a wake-up asked for sooner than the one timer is set for comes sooner", async () => {
  let now = 1_000;
  let woke = 0;
  const shares = new Shares({
    now: () => now,
    waiting: () => false,
    wake: () => woke++,
    backends: () => 2,
  });
  try {
    const small = shares.of({});
    const large = shares.of({});
    const [b1, b2] = [{}, {}];
    // A small request on the backends, and nothing may go: the queue is pumped again in 50 ms.
    shares.took(small, false, 10, b1);
    shares.stalled();
    // A 40 KB request went and was answered: the next owes its bytes, paid by time in 1 ms.
    shares.took(large, false, 40_000, b2);
    now += 0.1;
    shares.gave(large, false, now, { bytes: 40_000, backend: b2, sentAt: now - 0.1 });
    assert.equal(shares.pacing.room(40_000, large), false, "it waits for its pace");
    await sleep(20);
    // Before: the wake-up asked for in 1 ms was dropped for the timer set for 50.
    assert.ok(woke >= 1, "the queue was pumped within 20 ms");
  } finally {
    shares.stop();
  }
});
