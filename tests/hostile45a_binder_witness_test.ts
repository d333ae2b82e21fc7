/**
 * hostile45a K-A2: stop 44's H-A2 fix (success_rate.ts mayEject: only a
 * backend that is not a dial-in worker may be the "sound" witness that
 * lifts the half-of-the-pool ejection cap) counts every instance a binder
 * names as such a server. But a binder takes `binder.register` from anyone
 * by default (no credential), so the same lying peer, registered at the
 * binder as an instance of the balancer's `--service` rather than on its
 * worker port, is a witness again: one client's `sleep`s past `--timeout`
 * are replayed on it, it answers at once, and both operator-named servers
 * are out together; every honest request then goes to the attacker's
 * instance.
 *
 * A user checks that the two servers they named with `--backends` are
 * never out together while an unknown instance joins through the binder.
 * (The liar answers with no `by`: "undefined" in the tally.)
 */
import assert from "node:assert/strict";
import type net from "node:net";
import { backendsOf, connectTo, startBalancer, startServers, stopAll } from "./helpers/balancer.ts";
import { startDist } from "./helpers/dist.ts";
import { connectTo as binderConn } from "./helpers/binder.ts";
import { answeredBy, outTogether, quick, sleepLoops } from "./helpers/hostile44.ts";
import { listen, type Peer } from "../wire/mod.ts";

Deno.test("a lying instance registered at an open binder does not take both --backends servers out (hostile45a K-A2)", async () => {
  const binder = await startDist(["binder", "--port", "0"]);
  const servers = await startServers(2);
  const service = ["--service", "compute", "--binders", binder.address];
  const balancer = await startBalancer(servers, [...service, "--timeout", "1s"]);
  // The attacker's "server": answers every request at once, sleep included.
  const liar = listen({
    port: 0,
    role: "server",
    name: "quick",
    onRequest: (method, params) => quick(method, (params ?? {}) as Record<string, unknown>),
  });
  const sockets: net.Socket[] = [];
  let attacker: Peer | undefined;
  let stop = false;
  try {
    const mallory = await binderConn(binder.address);
    await mallory.call("binder.register", {
      service: "compute",
      host: "127.0.0.1",
      port: liar.addr.port,
      ttl_ms: 600_000,
    });
    mallory.close();
    attacker = await connectTo(balancer.address);
    // Until the instance is dialed and has answered.
    for (let i = 0; i < 200; i++) {
      await attacker.call("echo", { text: `x${i}` });
      const view = await backendsOf(attacker);
      if (i >= 60 && view.some((b) => b.peer === "quick" && b.served > 5)) break;
    }
    const loops = sleepLoops(attacker, 6, 1500, () => stop);
    const [bothOut, looks] = await outTogether(balancer.address, 12_000, (b) => b.peer !== "quick");
    stop = true;
    await loops;
    const by = await answeredBy(balancer.address, 3000, sockets);
    const summary = `both --backends servers out in ${bothOut} of ${looks} looks; honest calls ` +
      `then answered by ${JSON.stringify(Object.fromEntries(by))}; load ${Deno.loadavg()[0]}`;
    console.log(summary);
    assert.equal(bothOut, 0, `the servers are never out together (${summary})`);
  } finally {
    stop = true;
    attacker?.close();
    for (const s of sockets) s.destroy();
    await liar.close(0);
    await stopAll([balancer, ...servers, binder]);
  }
});
