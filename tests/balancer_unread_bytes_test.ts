/**
 * Requests a backend read and sits on count no longer against the byte
 * bound, and paced requests earn with time too (roles/balancer/unread.ts,
 * pacing.ts; hostile37 K5): three connections each holding one `sleep`
 * of 60 KB on the backends, and twenty sending a 10-byte request every
 * 400 ms, made every request of 4 KiB or more from anyone wait, then fail
 * with OVERLOADED after 3 s, while the backends were idle. Driven through
 * the dispatcher without sockets, on a clock of the test's.
 */
import assert from "node:assert/strict";
import { DistError } from "../wire/mod.ts";
import { sizedDispatcher as setup, type SizedJob } from "./helpers/dispatcher.ts";

for (const size of [8_000, 40_000]) {
  Deno.test(`Dispatcher: three sleeping requests of 60 KB and twenty idle connections let requests of ${size} bytes go`, () => {
    const { dispatcher, clock, conn, submit, answer, on } = setup();
    // Three connections, each with one request of 60,000 bytes the backends sit on.
    const holders = [2, 3, 4].map((i) => conn(`10.0.0.${i}`));
    for (const h of holders) submit(h, 60_000);
    const idlers = Array.from({ length: 20 }, (_, i) => conn(`10.0.1.${i}`));
    const legit = conn("10.0.2.1");
    // 20 ms a round: one idler's 10-byte request, answered; the legitimate client's one request.
    // One request at a time, each sent once the last was answered.
    let went = 0;
    let waited = 0;
    let mine: SizedJob | undefined;
    for (let r = 0; r < 200; r++) {
      const idle = submit(idlers[r % idlers.length], 10);
      if (on.has(idle)) answer(idle);
      clock.advance(1);
      mine ??= submit(legit, size);
      if (!on.has(mine)) {
        // It may wait while what the backends read is not yet known to sit there.
        waited++;
        clock.advance(19);
        dispatcher.pump();
      }
      if (on.has(mine)) {
        went++;
        answer(mine);
        mine = undefined;
      }
      clock.advance(1);
    }
    // Before: none went (each waited 3 s, then OVERLOADED).
    assert.ok(went >= 190, `${went} of 200 went, ${waited} waited`);
    assert.ok(waited <= 8, `${waited} of 200 waited`);
    // The sleeping requests are still there.
    assert.equal([...on.keys()].filter((j) => j.size === 60_000).length, 3);
    dispatcher.close(new DistError("UNAVAILABLE", "done"));
  });
}

Deno.test("Dispatcher: a request read and not answered stays counted for 100 ms", () => {
  const { dispatcher, clock, conn, submit, answer, on } = setup();
  const holders = [2, 3, 4].map((i) => conn(`10.0.0.${i}`));
  for (const h of holders) submit(h, 60_000);
  // Answers of requests sent later (to each backend), at once: the sleeping ones count still.
  clock.advance(1);
  for (let i = 0; i < 4; i++) {
    const j = submit(conn(`10.0.1.${i}`), 10);
    answer(j);
  }
  const legit = conn("10.0.2.1");
  const mine = submit(legit, 40_000);
  assert.ok(!on.has(mine), "went while 180 KB may be ahead of it");
  clock.advance(100);
  dispatcher.pump();
  assert.ok(on.has(mine), "waited past 100 ms");
  dispatcher.close(new DistError("UNAVAILABLE", "done"));
});
