/**
 * The balancer's backend health in /metrics: backends by state (up, down)
 * and missed health checks follow a server that stops answering (SIGSTOP)
 * and comes back (SIGCONT); the text passes `promtool check metrics`.
 */
import assert from "node:assert/strict";
import { startBalancer, startServers, stopAll } from "./helpers/balancer.ts";
import { metricsUrl, promtoolCheck, sample, scrapeUntil } from "./helpers/metrics.ts";

const UP = 'dist_balancer_backends{state="up"}';
const DOWN = 'dist_balancer_backends{state="down"}';
const FAILED = "dist_balancer_health_checks_failed_total";

Deno.test("--metrics: the balancer's backends by state and missed checks follow a frozen server", async () => {
  const servers = await startServers(2);
  const lb = await startBalancer(servers, [
    "--metrics",
    "127.0.0.1:0",
    "--check-interval",
    "200ms",
    "--fall",
    "2",
    "--rise",
    "1",
    // Heartbeats slower than the checks: the checks must be what notices.
    "--heartbeat",
    "10s",
  ]);
  try {
    const url = await metricsUrl(lb.stderr);
    const before = await scrapeUntil(url, (t) => sample(t, UP) === 2, 5000, "2 backends up");
    assert.equal(sample(before, DOWN), 0);
    assert.equal(sample(before, FAILED), 0);
    assert.equal(await promtoolCheck(before), "", before);

    servers[0].child.kill("SIGSTOP");
    const out = await scrapeUntil(
      url,
      (t) => sample(t, DOWN) === 1 && sample(t, UP) === 1,
      5000,
      "1 backend down",
    );
    assert.ok(sample(out, FAILED)! >= 2, `--fall 2: at least 2 missed checks\n${out}`);
    assert.equal(await promtoolCheck(out), "", out);

    servers[0].child.kill("SIGCONT");
    const back = await scrapeUntil(url, (t) => sample(t, UP) === 2, 5000, "both up again");
    assert.equal(sample(back, DOWN), 0);
    assert.ok(sample(back, FAILED)! >= sample(out, FAILED)!, "a counter never goes back");
  } finally {
    try {
      servers[0].child.kill("SIGCONT");
    } catch {
      // Already gone.
    }
    await stopAll([lb, ...servers]);
  }
});
