/**
 * hostile39a P9: 40 connections from one address that pipeline small
 * requests and never read (40 × the wire's 256 in flight: more than
 * `--queue` 10,000). Once their requests start expiring, every read of a
 * non-reader was refused OVERLOADED and answered into a socket nobody
 * reads, read again 100 ms later: the balancer refused ~60,000 requests a
 * second for as long as they stayed, RSS +230 MiB, a sequential client
 * beside them fell to 16 calls/s at p99 1.9 s (the reviewer's figures).
 * Now a connection told OVERLOADED is read again only once it has taken
 * its answers (pressure.ts backOff): a non-reader is refused about one
 * read's worth, then held like any socket nobody drains.
 */
import assert from "node:assert/strict";
import { connectTo, startBalancer, startServers, stopAll } from "./helpers/balancer.ts";
import { cpuSeconds } from "./helpers/dist.ts";
import { nonreaders } from "./helpers/nonreaders.ts";
import { sleep } from "./helpers/raw.ts";

const ATTACKERS = 40;

function rssMiB(pid: number): number {
  return Number(/VmRSS:\s+(\d+)/.exec(Deno.readTextFileSync(`/proc/${pid}/status`))![1]) / 1024;
}

Deno.test("40 non-readers from one address past --queue: refusals stop, a sequential client is served", async () => {
  const servers = await startServers(2);
  const balancer = await startBalancer(servers, [
    "--check-interval",
    "1s",
    "--queue-timeout",
    "1s",
  ]);
  const legit = await connectTo(balancer.address);
  let stopAttack: (() => Promise<number>) | undefined;
  try {
    // In their own process at nice 19, a thousand requests to a write (the reviewer's shape).
    stopAttack = await nonreaders(balancer.port, ATTACKERS, 1e9, 1, { batch: 1000, nice: true });
    // Queue full, requests expiring every second: the refusals' pump, if any, is running.
    await sleep(3000);
    const stats = () => legit.call("sys.stats") as Promise<Record<string, number>>;
    // Each non-reader is refused about one read's worth once. Under load (a CI machine at load
    // 10-14) the attackers' process at nice 19 is still writing its first reads after 3 s: 17,000
    // refused a second in the window, the legit client served at p99 9 ms. So wait up to 15 s for
    // the refusals to fall under the bound for half a second; main's pump never did.
    let before = await stats();
    for (const settle = performance.now(); performance.now() - settle < 15_000;) {
      await sleep(500);
      const now = await stats();
      const settled = now.overloaded - before.overloaded < 500;
      before = now;
      if (settled) break;
    }
    const cpu0 = cpuSeconds(balancer.child.pid);
    const times: number[] = [];
    const start = performance.now();
    for (let i = 0; performance.now() - start < 3000; i++) {
      const t = performance.now();
      assert.equal(await legit.call("add", { a: i, b: 1 }, { timeout: 10_000 }), i + 1);
      times.push(performance.now() - t);
    }
    const seconds = (performance.now() - start) / 1000;
    const cpu = (cpuSeconds(balancer.child.pid) - cpu0) / seconds;
    const after = await stats();
    times.sort((a, b) => a - b);
    const p99 = times[Math.floor(times.length * 0.99)];
    const rate = times.length / seconds;
    const refused = (after.overloaded - before.overloaded) / seconds;
    const summary = `legit ${rate.toFixed(0)} calls/s, p99 ${p99.toFixed(1)} ms; refused ${
      refused.toFixed(0)
    }/s; balancer CPU ${(cpu * 100).toFixed(0)} % of a core, RSS ${
      rssMiB(balancer.child.pid).toFixed(0)
    } MiB; load ${Deno.loadavg()[0]}`;
    console.log(summary);
    assert.ok(before.overloaded > 0, `the attackers overflowed the queue (${summary})`);
    // Main: 6,000-60,000 a second for as long as the attackers stay.
    assert.ok(refused < 1000, `refusals stopped (${summary})`);
    // Generous for a loaded shared 2-core machine (issue 16: p99 ≤ 50 ms; main: ~2 s).
    assert.ok(p99 < 200 && rate > 200, `the sequential client is served (${summary})`);
    // The sequential client alone costs the balancer ~15-25 % of a core here.
    assert.ok(cpu < 0.6, `the attack costs the balancer little CPU (${summary})`);
  } finally {
    legit.close();
    await stopAttack?.();
    await stopAll([balancer, ...servers]);
  }
});
