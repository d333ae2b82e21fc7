/**
 * h48 P18: `dist_event_loop_lag_seconds` is the worst lag of the last 60 s,
 * and no scrape resets it: two scrapers (an HA pair of Prometheus, a curl)
 * both see a stall. `dist_event_loop_late_seconds_total` sums every lag.
 */
import assert from "node:assert/strict";
import { Registry } from "../obs/metrics.ts";
import { processMetrics } from "../obs/process.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function value(text: string, name: string): number {
  const m = new RegExp(`^${name} (\\S+)$`, "m").exec(text);
  assert.ok(m, `${name} in\n${text}`);
  return Number(m[1]);
}

Deno.test("the event-loop lag gauge is not reset by a scrape (h48 P18)", async () => {
  const registry = new Registry();
  const stop = processMetrics(registry, () => ({ role: "test", name: "t", version: "0" }));
  try {
    await sleep(250);
    // A stall of 400 ms: the next 100 ms sample is at least 300 ms late.
    const end = performance.now() + 400;
    while (performance.now() < end) { /* block the loop */ }
    await sleep(250);
    const first = registry.render();
    const second = registry.render();
    await sleep(250); // Samples after both scrapes do not hide it either.
    const third = registry.render();
    for (const text of [first, second, third]) {
      assert.ok(value(text, "dist_event_loop_lag_seconds") >= 0.25, text);
    }
    assert.ok(value(third, "dist_event_loop_late_seconds_total") >= 0.25, third);
  } finally {
    stop();
  }
});
