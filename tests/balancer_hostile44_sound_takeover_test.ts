/**
 * hostile44a H-A2: c43's A4 fix (success_rate.ts mayEject: no cap holds a
 * backend in while another up backend with 20+ outcomes fails at most half
 * as much) lets one registered worker take every server out at once. A
 * worker that answers every task at once (a `sleep` too: it lies) and a
 * client whose `sleep`s outlast `--timeout` (no error answer at all, unlike
 * A7): the servers' timeouts are replayed on the worker, which answers, or
 * go unreplayed once the retry budget is spent; the worker is "sound", so
 * the half-of-the-pool cap no longer holds, and both servers are out
 * together. Every honest client's requests then go to that worker
 * (hostile44a-scripts/fast_worker_timeouts.py: 387 of 462 honest calls, both
 * servers down; on 6bac056^, before A4's fix, one server out at a time and
 * the worker answered 162 of 444, its third).
 */
import assert from "node:assert/strict";
import type net from "node:net";
import { connectTo, startBalancer, startServers, stopAll } from "./helpers/balancer.ts";
import { sleep } from "./helpers/raw.ts";
import { quick, rawPeer } from "./helpers/hostile44.ts";
import type { Peer } from "../wire/mod.ts";

Deno.test("a worker that answers sleeps at once, beside one client's sleeps past --timeout, does not take every server out (hostile44a H-A2)", async () => {
  const servers = await startServers(2);
  const balancer = await startBalancer(servers, ["--timeout", "1s"]);
  const sockets: net.Socket[] = [];
  let attacker: Peer | undefined;
  let stop = false;
  try {
    const register = await rawPeer(
      balancer.workerAddress,
      "127.0.0.9",
      { role: "worker", name: "quick" },
      quick,
      sockets,
    );
    const reg = await register({
      method: "worker.register",
      params: { name: "quick", capacity: 64 },
    });
    assert.equal(reg.error, undefined, JSON.stringify(reg));
    attacker = await connectTo(balancer.address);
    for (let i = 0; i < 60; i++) await attacker.call("echo", { text: `x${i}` });
    // Six loops of sleeps that outlast --timeout, for 12 s.
    const a = attacker;
    const loops = Array.from({ length: 6 }, async () => {
      while (!stop) await a.call("sleep", { ms: 1500 }, { timeout: 10_000 }).catch(() => {});
    });
    await sleep(12_000);
    stop = true;
    await Promise.all(loops);
    const honest = await rawPeer(
      balancer.address,
      "127.0.3.7",
      { role: "client", name: "honest" },
      quick,
      sockets,
    );
    const by = new Map<string, number>();
    const end = performance.now() + 4000;
    while (performance.now() < end) {
      const m = await honest({ method: "add", params: { a: 2, b: 2 } });
      const who = String(m.by ?? (m.error as { code?: string } | undefined)?.code);
      by.set(who, (by.get(who) ?? 0) + 1);
      await sleep(10);
    }
    const total = [...by.values()].reduce((s, n) => s + n, 0);
    const summary = `honest calls answered by ${JSON.stringify(Object.fromEntries(by))}; ` +
      `load ${Deno.loadavg()[0]}`;
    console.log(summary);
    // Main: quick 84-100 % (both servers out together); before A4's fix, one out at a time:
    // a half at most. Bound: 75 %.
    assert.ok(
      (by.get("quick") ?? 0) <= 0.75 * total,
      `the worker does not take the pool (${summary})`,
    );
  } finally {
    stop = true;
    attacker?.close();
    for (const s of sockets) s.destroy();
    await stopAll([balancer, ...servers]);
  }
});
