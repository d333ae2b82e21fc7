/**
 * hostile42a Y1, in part: 40 non-readers that redial when paused, spread
 * over 100 addresses of one /24, are never a redialing source (about one
 * redial an address a second), so each of their new connections was read
 * and refused, thousands a second. Their network redials: the listener
 * takes its new connections at a pace (roles/balancer/redial_nets.ts).
 *
 * hostile43a A2: an address that itself redialed got its own bucket first,
 * so 100 non-readers over 20 addresses of one /24, each redialing a few
 * times a second, had 20 buckets of 50 new connections a second (11,338
 * refusals a second): the network's redialing addresses share one.
 */
import assert from "node:assert/strict";
import { connectTo, startBalancer, startServers, stopAll } from "./helpers/balancer.ts";
import { redialers } from "./helpers/hostile42.ts";
import { sleep } from "./helpers/raw.ts";
import { PACE_PER_S } from "../wire/accept_pace.ts";

for (
  const [count, spread] of [[40, 100], [100, 20]] as const
) {
  Deno.test(`${count} non-readers redialing from ${spread} addresses of one /24: their network is paced as one, refusals stay bounded`, async () => {
    const servers = await startServers(1);
    const balancer = await startBalancer(servers, ["--queue", "1000"]);
    const probe = await connectTo(balancer.address);
    let stop: (() => Promise<number>) | undefined;
    try {
      // A loaded balancer answers late, not never.
      const stats = () =>
        // deno-lint-ignore no-explicit-any
        probe.call("sys.stats", undefined, { timeout: 30_000 }) as Promise<Record<string, any>>;
      // deno-lint-ignore no-explicit-any
      const pacedOf = (s: Record<string, any>) =>
        s.connection_limits.paced.paced_waited + s.connection_limits.paced.paced_refused;
      stop = await redialers(balancer.port, count, "127.0.0.2", spread);
      // Refusals are counted once their network is paced, after 32 redials of it: 5 s in, a
      // loaded machine's redialers had not made them (a parallel run at load 18: 189 connections,
      // none paced, 6,574 refusals a second). Polled, not slept: without the rule it never comes
      // (NET_REDIALS = Infinity: both cases fail here at 60 s).
      const deadline = performance.now() + 60_000;
      let before = await stats();
      while (pacedOf(before) === 0 && performance.now() < deadline) {
        await sleep(250);
        before = await stats();
      }
      assert.ok(
        pacedOf(before) > 0,
        `paced within 60 s (${
          JSON.stringify(before.connection_limits)
        }; refused ${before.overloaded}; redialing ${before.redialing_sources})`,
      );
      // Counted from 2 s after, as it was from 2-3 s in: the connections read before the pace
      // began are refused meanwhile.
      await sleep(2000);
      // Counts over one span the balancer's two snapshots lie within (from before the first ask
      // to after the second answer): the connections it took are bounded by its network's one
      // bucket over that span, whatever the load. A bound on refusals a second (1,500 and 3,000)
      // climbed with the load (f47a); main read every new connection (6,574 and 11,338 refusals a
      // second: one bucket an address).
      const tBefore = performance.now();
      before = await stats();
      const t0 = performance.now();
      await sleep(3000);
      const after = await stats();
      const seconds = (performance.now() - t0) / 1000;
      const span = (performance.now() - tBefore) / 1000;
      const made = await stop();
      const refused = (after.overloaded - before.overloaded) / seconds;
      const taken = after.connection_limits.accepted - before.connection_limits.accepted;
      const mostTaken = PACE_PER_S * span + PACE_PER_S;
      const paced = after.connection_limits?.paced;
      const summary =
        `took ${taken} connections in ${span.toFixed(1)} s (at most ${
          mostTaken.toFixed(0)
        }); refused ${refused.toFixed(0)}/s; made ${made} connections; redialing ` +
        `${after.redialing_sources}; paced ${JSON.stringify(paced)}; load ${Deno.loadavg()[0]}`;
      console.log(summary);
      assert.ok(made > 80, `they redialed (${summary})`);
      assert.ok(after.redialing_sources >= 1, `their network redials (${summary})`);
      assert.ok(taken <= mostTaken, `connections taken within one bucket's pace (${summary})`);
    } finally {
      probe.close();
      await stop?.();
      await stopAll([balancer, ...servers]);
    }
  });
}
