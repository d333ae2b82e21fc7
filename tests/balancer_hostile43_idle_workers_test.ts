/**
 * hostile43a A9: every request walks every backend while untried workers
 * are registered. policies.ts `Guarded.pick` asks the policy first; when
 * its pick is untried (with 1,000 idle fakes beside one server, almost
 * every pick of the rotation), it loops over the whole list to collect the
 * proven ones, then asks the policy again among those. So 1,000 workers
 * that registered and answer health checks, and were never sent anything
 * (`--max-workers`' default, from 200 addresses, no credential), raised
 * the balancer's CPU per forwarded request from 2.9-3.4 us to 14.7-20.4 us
 * and cut a c=32 client from 77-123k to 16-27k calls a second
 * (hostile43a-scripts/many_untried.ts 0|1000 32 5, alternated under
 * bench.lock, load 15-18).
 *
 * A user checks the client's throughput before and after the idle workers
 * came, in one run, and the balancer's CPU for each call (top's figure over
 * the calls made): the rate alone moves with the machine's load (2-10x here,
 * more on a loaded CI machine), the CPU a call costs much less.
 */
import assert from "node:assert/strict";
import type net from "node:net";
import { connectTo, startBalancer, startServers, stopAll } from "./helpers/balancer.ts";
import { cpuSeconds } from "./helpers/dist.ts";
import { sleep } from "./helpers/raw.ts";
import { fakeWorker } from "./helpers/source_workers.ts";
import type { Peer } from "../wire/mod.ts";

/**
 * `c` closed-loop `add` callers over `ms`: calls a second, and the
 * balancer's (`pid`) CPU time per call (µs), less `idle` (its CPU seconds a
 * second with no calls).
 */
async function rate(
  client: Peer,
  pid: number,
  c: number,
  ms: number,
  idle = 0,
): Promise<{ rate: number; us: number }> {
  let ok = 0;
  const cpu0 = cpuSeconds(pid);
  const t0 = performance.now();
  await Promise.all(Array.from({ length: c }, async (_, k) => {
    while (performance.now() - t0 < ms) {
      await client.call("add", { a: k, b: 1 });
      ok++;
    }
  }));
  const seconds = (performance.now() - t0) / 1000;
  const us = Math.max(0, cpuSeconds(pid) - cpu0 - idle * seconds) * 1e6 / ok;
  return { rate: ok / seconds, us };
}

Deno.test("1,000 idle registered workers do not cut a client's throughput through the balancer", async () => {
  const servers = await startServers(1);
  const lb = await startBalancer(servers, ["--check-interval", "1s"]);
  const client = await connectTo(lb.address, 10_000);
  const fakes: net.Socket[] = [];
  try {
    const pid = lb.child.pid;
    await rate(client, pid, 32, 500); // warm-up
    const alone = await rate(client, pid, 32, 3000);
    for (let i = 0; i < 1000; i += 50) {
      const answers = await Promise.all(Array.from(
        { length: 50 },
        (_, k) =>
          fakeWorker(lb.workerAddress, `127.0.7.${1 + (i + k) % 200}`, `idle${i + k}`, fakes, true),
      ));
      assert.ok(answers.every((a) => a === "registered"), answers.join(","));
    }
    await sleep(3000); // their first health checks (a burst of 1,000) done
    // What the workers cost with no calls (their health checks: --check-interval 1s) is theirs.
    const idle0 = cpuSeconds(pid), idleT0 = performance.now();
    await sleep(1000);
    const idle = (cpuSeconds(pid) - idle0) / ((performance.now() - idleT0) / 1000);
    // The better of two rounds: the fakes live in this process, beside the client, and their
    // health checks come in bursts (at load 12-18, 1 round in 3 ran at 0.06-0.14x, the server's
    // own p99 223 ms; the next at 0.7-3.9x).
    const rounds = [
      await rate(client, pid, 32, 2000, idle),
      await rate(client, pid, 32, 2000, idle),
    ];
    const beside = rounds[0].rate >= rounds[1].rate ? rounds[0] : rounds[1];
    const summary = `alone ${alone.rate.toFixed(0)} calls/s at ${
      alone.us.toFixed(1)
    } us of balancer CPU each, beside 1,000 idle workers ${beside.rate.toFixed(0)} at ${
      beside.us.toFixed(1)
    } us beyond their health checks' ${(idle * 1000).toFixed(0)} ms/s (${
      (beside.rate / alone.rate).toFixed(2)
    }x, ${(beside.us / alone.us).toFixed(2)}x); load ${Deno.loadavg()[0]}`;
    console.log(summary);
    // Before A9's fix 0.21x the calls (0.02x at load 12) at 14.7-20.4 us a call against 2.9-3.4.
    // Beside them a pick is made per request (a pool past 16 has no runs): at load 1.6-2.0 the
    // rate was 0.50-0.94x alone (0.6 failed 1 CI run in 4, 0.45 one in 8 on a slower machine),
    // the CPU a call 1.0-1.6x. Either within its bound says the calls are not walking the workers.
    // The CPU clause only where the rate is not far off (review45 R8: health checks starved while
    // the calls ran would make the idle figure too large and the CPU clause pass whatever).
    const cpuHolds = beside.rate >= 0.2 * alone.rate && beside.us > 0 &&
      beside.us <= 2.5 * alone.us;
    assert.ok(beside.rate >= 0.45 * alone.rate || cpuHolds, summary);
  } finally {
    client.close();
    for (const f of fakes) f.destroy();
    await sleep(10);
    await stopAll([lb, ...servers]);
  }
});
