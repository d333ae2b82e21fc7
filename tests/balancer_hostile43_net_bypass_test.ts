/**
 * hostile43a A2: past 32 redials a /24 is to be paced as one source
 * (roles/balancer/redial_nets.ts, README Limits), but pressure.ts
 * `pacedAs` answers an address's own bucket first whenever that address
 * itself redials (more than 8): non-readers spread over 20 addresses of one
 * /24, each redialing a few times a second, get 20 buckets of 50 new
 * connections a second instead of one, and the network is never paced:
 * thousands of refusals a second, as if no network rule existed (the
 * same 100 over 250 addresses, each too slow to redial alone: paced).
 */
import assert from "node:assert/strict";
import { connectTo, startBalancer, startServers, stopAll } from "./helpers/balancer.ts";
import { redialers } from "./helpers/hostile42.ts";
import { sleep } from "./helpers/raw.ts";

Deno.test("100 non-readers redialing from 20 addresses of one /24: their network is paced as one, refusals stay bounded", async () => {
  const servers = await startServers(1);
  const balancer = await startBalancer(servers, ["--queue", "1000"]);
  const probe = await connectTo(balancer.address);
  let stop: (() => Promise<number>) | undefined;
  try {
    // deno-lint-ignore no-explicit-any
    const stats = () => probe.call("sys.stats") as Promise<Record<string, any>>;
    stop = await redialers(balancer.port, 100, "127.0.0.2", 20);
    await sleep(3000);
    const before = await stats();
    const t0 = performance.now();
    await sleep(3000);
    const after = await stats();
    const seconds = (performance.now() - t0) / 1000;
    const made = await stop();
    const refused = (after.overloaded - before.overloaded) / seconds;
    const paced = after.connection_limits?.paced;
    const summary = `refused ${refused.toFixed(0)}/s; made ${made} connections; redialing ` +
      `${after.redialing_sources}; paced ${JSON.stringify(paced)}; load ${Deno.loadavg()[0]}`;
    console.log(summary);
    assert.ok(made > 80, `they redialed (${summary})`);
    // Twice balancer_redial_nets_test's bound (40 over 100 addresses: 885-2,400 a second here).
    assert.ok(refused < 3000, `refusals bounded (${summary})`);
  } finally {
    probe.close();
    await stop?.();
    await stopAll([balancer, ...servers]);
  }
});
