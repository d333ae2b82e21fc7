/**
 * Hostile review h47 Q3 (medium): with the defaults, a server whose binder
 * stops answering (frozen, a host paused, packets dropped: not refused) loses
 * its lease on every binder before it moves to the next one. It renews every
 * TTL/3 (1 s of the default 3 s) and each call waits the binder client's
 * timeout (2 s) before the next binder is tried: the renewal after the last
 * one answered reaches another binder at 1 s + 2 s = the lease's very end,
 * so it is refused (`Instance … is expired: register again`), and the
 * instance is gone from the registry until it registers again (lookups
 * NOT_FOUND; when the 100 ms sweep falls in that gap, a tombstone and an
 * empty list to every watcher). Every server using the stuck binder does
 * this at once. Eureka renews every 30 s against a 90 s lease (two missed
 * renewals are harmless); Consul's agents keep TTL checks locally.
 *
 * Expected: a server fails over to a live binder while its lease still runs
 * there: the live binder takes a renewal, not a new registration.
 */
import assert from "node:assert/strict";
import { failoverFromStuck } from "./helpers/stuck_binders.ts";

Deno.test("h47 Q3: a server whose binder hangs moves to the next one before its lease runs out", async () => {
  const seen = await failoverFromStuck(2, 1, "stuck", 6000);
  assert.equal(seen.current, seen.live, "moved to the live binder");
  assert.ok(seen.listed, "the live binder lists it");
  assert.equal(
    seen.registrations,
    0,
    `the live binder had to take the instance as a new registration (its lease had run out ` +
      `there): ${JSON.stringify({ registrations: seen.registrations, renewals: seen.renewals })}`,
  );
});
