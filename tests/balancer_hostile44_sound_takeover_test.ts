/**
 * hostile44a H-A2: c43's A4 fix (success_rate.ts mayEject: no cap holds a
 * backend in while another up backend with 20+ outcomes fails at most half
 * as much) lets one registered worker take every server out at once. A
 * worker that answers every task at once (a `sleep` too: it lies) and a
 * client whose `sleep`s outlast `--timeout` (no error answer at all, unlike
 * A7): the servers' timeouts are replayed on the worker, which answers, or
 * go unreplayed once the retry budget is spent; the worker is "sound", so
 * the half-of-the-pool cap no longer holds, and both servers are out
 * together (34 of 60 looks in 12 s; 0 on 6bac056^). Every honest client's requests then go to that worker
 * (hostile44a-scripts/fast_worker_timeouts.py: 387 of 462 honest calls, both
 * servers down; on 6bac056^, before A4's fix, one server out at a time and
 * the worker answered 162 of 444, its third).
 */
import assert from "node:assert/strict";
import type net from "node:net";
import { connectTo, startBalancer, startServers, stopAll } from "./helpers/balancer.ts";
import { answeredBy, lyingWorker, outTogether, sleepLoops } from "./helpers/hostile44.ts";
import type { Peer } from "../wire/mod.ts";

Deno.test("a worker that answers sleeps at once, beside one client's sleeps past --timeout, does not take every server out (hostile44a H-A2)", async () => {
  const servers = await startServers(2);
  const balancer = await startBalancer(servers, ["--timeout", "1s"]);
  const sockets: net.Socket[] = [];
  let attacker: Peer | undefined;
  let stop = false;
  try {
    await lyingWorker(balancer.workerAddress, sockets);
    attacker = await connectTo(balancer.address);
    for (let i = 0; i < 60; i++) await attacker.call("echo", { text: `x${i}` });
    // Six loops of sleeps that outlast --timeout, for 12 s.
    const loops = sleepLoops(attacker, 6, 1500, () => stop);
    // Which servers are out, looked at every 200 ms for 12 s.
    const [bothOut, looks] = await outTogether(
      balancer.address,
      12_000,
      (b) => b.kind === "server",
    );
    stop = true;
    await loops;
    const by = await answeredBy(balancer.address, 4000, sockets);
    const summary = `both servers out in ${bothOut} of ${looks} looks; honest calls then ` +
      `answered by ${JSON.stringify(Object.fromEntries(by))}; load ${Deno.loadavg()[0]}`;
    console.log(summary);
    // Main: both out together in 34 of 60 looks (the worker then answers 75-100 % of the honest
    // calls); before A4's fix (6bac056^), never: one at a time (the cap, half the pool).
    assert.equal(bothOut, 0, `the servers are never out together (${summary})`);
  } finally {
    stop = true;
    attacker?.close();
    for (const s of sockets) s.destroy();
    await stopAll([balancer, ...servers]);
  }
});
