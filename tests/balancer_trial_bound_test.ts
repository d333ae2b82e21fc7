/**
 * A trial's bound (roles/balancer/trials.ts) learned from a method's slow
 * answers on proven backends. hostile40c V4: one client's `sleep 3000`
 * set the bound of every `sleep` trial to 12 s (capped at --timeout) for
 * 5 min, and fakes held one request each second for that long.
 */
import assert from "node:assert/strict";
import type { Backend } from "../roles/balancer/backends.ts";
import type { Job } from "../roles/balancer/dispatch_types.ts";
import { Trials } from "../roles/balancer/trials.ts";

/** A proven backend's answer of `method` that took `ms`. */
function answer(trials: Trials, method: string, ms: number): void {
  const job = { method, sentAt: performance.now() - ms, idempotent: true } as unknown as
    & Job
    & { method: string };
  trials.ended(job, { untried: false } as unknown as Backend, "answered");
}

Deno.test("one slow answer does not raise a method's trial bound; many raise it to 4 s at most (hostile40c V4)", () => {
  const trials = new Trials(30_000);
  answer(trials, "sleep", 3_000);
  // Before: 12,000 ms (4x the one slowest answer), held for --timeout (10 s in the reviewer's run).
  assert.equal(trials.bound("sleep", performance.now()), 1_000);
  answer(trials, "sleep", 3_000);
  answer(trials, "sleep", 3_000);
  assert.equal(trials.bound("sleep", performance.now()), 4_000, "a fixed ceiling");
  // The median of the recent ones: a method mostly answered in 400 ms stays near 1.6 s.
  const mostly = new Trials(30_000);
  for (const ms of [400, 400, 20_000, 400, 400]) answer(mostly, "render", ms);
  assert.equal(Math.round(mostly.bound("render", performance.now()) / 100), 16);
});
