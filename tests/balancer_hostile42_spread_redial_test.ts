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
import { PACE_PER_S } from "../wire/accept_pace.ts";

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
    // A loaded balancer answers late, not never.
    // deno-lint-ignore no-explicit-any
    const stats = () => legit.call("sys.stats", undefined, { timeout: 30_000 }) as Promise<any>;
    // Their network is seen redialing and paced: polled, not slept.
    const deadline = performance.now() + 60_000;
    let before = await stats();
    while (!(before.connection_limits.paced.paced_waited > 0) && performance.now() < deadline) {
      await sleep(250);
      before = await stats();
    }
    await sleep(1000);
    // Counts over one span the balancer's two snapshots lie within, not the rates of two spans
    // taken at different times (alone, then beside), which moved with the load (f47a).
    const tBefore = performance.now();
    before = await stats();
    const [beside, refused] = await closedLoopRate(legit, 4, 4000);
    const after = await stats();
    const span = (performance.now() - tBefore) / 1000;
    const made = await stop();
    const taken = after.connection_limits.accepted - before.connection_limits.accepted;
    const mostTaken = PACE_PER_S * span + PACE_PER_S;
    const summary =
      `legit ${alone.toFixed(0)} calls/s alone, ${beside.toFixed(0)} beside; made ${made} ` +
      `connections, took ${taken} in ${span.toFixed(1)} s (at most ${mostTaken.toFixed(0)}); ` +
      `redialing sources ${after.redialing_sources}; legit refused ${refused.length}` +
      ` (${refused[0] ?? "-"}); load ${Deno.loadavg()[0]}`;
    console.log(summary);
    assert.ok(made > 80, `they redialed (${summary})`);
    // Main: every new connection of the 100 addresses read (no source ever redialing), the other
    // address at 1-6 % of its rate alone and refused "Every backend was busy". Now their network
    // is paced as one: what it took is bounded by one bucket over the span, whatever the load.
    assert.ok(taken <= mostTaken, `connections taken within one bucket's pace (${summary})`);
    assert.ok(beside > 0, `the other address is served (${summary})`);
    assert.equal(refused.length, 0, `the other address is refused nothing (${summary})`);
  } finally {
    legit.close();
    await stop?.();
    await stopAll([balancer, ...servers]);
  }
});
