/**
 * hostile42a Y1: hostile41a W8's redialing non-readers (40 connections that
 * pipeline `sleep 5000` requests, never read, and dial again once paused)
 * are held back by pressure.ts's "redialing" rule only while one source
 * closes more than about one refused connection a second: the rule counts
 * closes per source (address, else user) and forgets one a second. Spread
 * over 100 loopback addresses (every one of 127.0.0.0/8 is local), no
 * source is ever redialing, and a client of another address fell from
 * 36,000-38,000 calls in 5 s (the same attack from one address) to
 * 218-4,663 (61,000 unattacked): W8 unmitigated.
 */
import assert from "node:assert/strict";
import { connectTo, startBalancer, startServers, stopAll } from "./helpers/balancer.ts";
import { redialers } from "./helpers/hostile42.ts";
import { sleep } from "./helpers/raw.ts";
import type { Peer } from "../wire/mod.ts";
import { closedLoop } from "./helpers/hostile44.ts";

/** Calls answered a second in `ms` by `c` loops of `add` in turn on `peer`, and the refusals among them. */
async function closedLoopRate(peer: Peer, c: number, ms: number): Promise<[number, string[]]> {
  const [answered, refused] = await closedLoop(peer, c, ms);
  return [answered / (ms / 1000), refused];
}

Deno.test("40 non-readers that redial when paused, spread over 100 addresses: another address is still served (hostile42a Y1)", async () => {
  const servers = await startServers(1);
  const balancer = await startBalancer(servers, ["--queue", "1000"]);
  const legit = await connectTo(balancer.address);
  let stop: (() => Promise<number>) | undefined;
  try {
    const [alone] = await closedLoopRate(legit, 4, 2000);
    stop = await redialers(balancer.port, 40, "127.0.0.2", 100);
    await sleep(3000);
    const [beside, refused] = await closedLoopRate(legit, 4, 4000);
    const stats = await legit.call("sys.stats") as Record<string, number>;
    const made = await stop();
    const summary =
      `legit ${alone.toFixed(0)} calls/s alone, ${beside.toFixed(0)} beside; made ${made} ` +
      `connections; redialing sources ${stats.redialing_sources}; legit refused ${refused.length}` +
      ` (${refused[0] ?? "-"}); load ${Deno.loadavg()[0]}`;
    console.log(summary);
    assert.ok(made > 80, `they redialed (${summary})`);
    // Main: 1-6 % here, and refused "Every backend was busy" (the 100 addresses held every slot,
    // one each in the reserve). Now 20-170 % at load 6-11, 10-26 % at 23-29: what remains is
    // the CPU the redialers take from a 2-core machine, so the bound is 10 %.
    assert.ok(beside >= alone * 0.1, `the other address keeps its rate (${summary})`);
    assert.equal(refused.length, 0, `the other address is refused nothing (${summary})`);
  } finally {
    legit.close();
    await stop?.();
    await stopAll([balancer, ...servers]);
  }
});
