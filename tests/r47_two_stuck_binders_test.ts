/**
 * Review r47 R2: the Q3 fix bounds each binder's try of a renewal (a third of the lease, at
 * least 500 ms), not the renewal: the binder client tries the binders one after another, so with
 * two binders that hang before a live one (a host with two binders paused, one zone's packets
 * dropped) a renewal reaches the live binder at TTL/3 + 2 × TTL/3 = the lease's end, refused
 * there, and the instance registers again (lookups NOT_FOUND meanwhile, watchers an empty list
 * when the sweep falls in the gap) — Q3 again. The same with one hung binder and a lease of at
 * most 750 ms (TTL/3 + the 500 ms floor ≥ TTL).
 *
 * Expected: a renewal's tries together end while the lease still runs on the next binder (bound
 * the whole call by what is left of the lease, not each try).
 */
import assert from "node:assert/strict";
import { failoverFromStuck } from "./helpers/stuck_binders.ts";

Deno.test("r47 R2: a server whose two binders hang moves to the third before its lease runs out", async () => {
  const seen = await failoverFromStuck(3, 2, "stuck2", 7000);
  assert.equal(seen.current, seen.live, "moved to the live binder");
  assert.equal(
    seen.registrations,
    0,
    `the live binder had to take the instance as a new registration (its lease had run out ` +
      `there): ${JSON.stringify({ registrations: seen.registrations, renewals: seen.renewals })}`,
  );
});
