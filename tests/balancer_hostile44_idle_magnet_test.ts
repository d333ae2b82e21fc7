/**
 * hostile44a H-A4: runs.ts sends a request to a backend idle for 1 ms
 * before the policy's pick whenever that pick has anything in flight. A
 * worker that answers every task at once (anyone may register one by
 * default, and README leaves a lying worker's answers undefended) is
 * always idle; one long request on each server (a `sleep 20000` from the
 * attacker's client, well within `--timeout`: nothing fails, nothing is
 * taken out) makes every server "busy" with 1 of its 128 slots. Then every
 * other client's request goes to that worker: an honest client's 531 of
 * 531 calls, against a third of them with no long request
 * (hostile44a-scripts/sleep_probe.py). It sees them all and answers what it
 * likes.
 *
 * A user checks who answers an honest client's calls while one slow
 * request sits on each server.
 */
import assert from "node:assert/strict";
import type net from "node:net";
import { backendsOf, connectTo, startBalancer, startServers, stopAll } from "./helpers/balancer.ts";
import { sleep } from "./helpers/raw.ts";
import { answeredBy, lyingWorker } from "./helpers/hostile44.ts";
import type { Peer } from "../wire/mod.ts";

Deno.test("one slow request per server does not send every other client's request to an idle worker (hostile44a H-A4)", async () => {
  const servers = await startServers(2);
  const balancer = await startBalancer(servers);
  const sockets: net.Socket[] = [];
  let attacker: Peer | undefined;
  try {
    await lyingWorker(balancer.workerAddress, sockets);
    attacker = await connectTo(balancer.address);
    for (let i = 0; i < 30; i++) await attacker.call("echo", { text: `x${i}` });
    // One slow request on each server: sent one at a time until each server holds one (those
    // that land on the worker come back at once).
    const slow: Promise<unknown>[] = [];
    for (let i = 0; i < 20; i++) {
      const view = await backendsOf(attacker);
      if (view.filter((b) => b.kind === "server" && b.inflight > 0).length === 2) break;
      slow.push(attacker.call("sleep", { ms: 20_000 }, { timeout: 30_000 }).catch(() => {}));
      await sleep(50);
    }
    const by = await answeredBy(balancer.address, 3000, sockets);
    const total = [...by.values()].reduce((s, n) => s + n, 0);
    const summary = `honest calls answered by ${JSON.stringify(Object.fromEntries(by))}; ` +
      `load ${Deno.loadavg()[0]}`;
    console.log(summary);
    attacker.close();
    await Promise.all(slow);
    // Main: quick 100 %; with no slow request, a third each. Bound: 60 %.
    assert.ok(
      (by.get("quick") ?? 0) <= 0.6 * total,
      `the worker does not take it all (${summary})`,
    );
  } finally {
    attacker?.close();
    for (const s of sockets) s.destroy();
    await stopAll([balancer, ...servers]);
  }
});
