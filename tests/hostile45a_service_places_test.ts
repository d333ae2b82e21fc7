/**
 * hostile45a K-A6: a `--service` balancer past `--max-backends` keeps a
 * place for an instance that serves, but "out of rotation for 5 s, it
 * gives it to one waiting" (README, balancer). A client takes real
 * servers out at will (its `sleep`s past `--timeout`; K-A2: a stranger's
 * instance answering at once is the witness that lifts the half-pool
 * cap, and without that, half the places may be out anyway), and a
 * stranger's instances registered at the open binder are the ones
 * waiting: 5 s later they hold the real servers' places, the real servers
 * are no longer dialed, and every honest call goes to the stranger's.
 *
 * A user checks that the service's two real servers are still among the
 * balancer's backends after a stranger registered instances and another
 * client sent slow requests.
 */
import assert from "node:assert/strict";
import type net from "node:net";
import { backendsOf, connectTo, startBalancer, stopAll } from "./helpers/balancer.ts";
import { startDist } from "./helpers/dist.ts";
import { startService } from "./helpers/binder.ts";
import { quick, rawPeer, sleepLoops } from "./helpers/hostile44.ts";
import { sleep } from "./helpers/raw.ts";
import { listen, type Peer } from "../wire/mod.ts";

Deno.test("a stranger's instances do not take the real servers' places after a client's slow requests (hostile45a K-A6)", async () => {
  const binder = await startDist(["binder", "--port", "0"]);
  const reals = [
    await startService("compute", binder.address, ["--name", "s1"]),
    await startService("compute", binder.address, ["--name", "s2"]),
  ];
  const service = ["--service", "compute", "--binders", binder.address];
  const lb = await startBalancer([], [...service, "--max-backends", "4", "--timeout", "1s"]);
  const liars = Array.from({ length: 4 }, (_, i) =>
    listen({
      port: 0,
      role: "server",
      name: `liar${i}`,
      onRequest: (m, p) => quick(m, (p ?? {}) as Record<string, unknown>),
    }));
  const sockets: net.Socket[] = [];
  let attacker: Peer | undefined;
  let stop = false;
  let loops: Promise<void> | undefined;
  try {
    attacker = await connectTo(lb.address, 10_000);
    for (let i = 0; i < 100; i++) await attacker.call("echo", { text: "x" });
    // The stranger's instances, registered from another address (another registrant).
    const mallory = await rawPeer(
      binder.address,
      "127.0.0.9",
      { role: "client", name: "mallory" },
      quick,
      sockets,
    );
    for (const l of liars) {
      await mallory({
        method: "binder.register",
        params: { service: "compute", host: "127.0.0.1", port: l.addr.port, ttl_ms: 600_000 },
      });
    }
    for (let i = 0; i < 200; i++) await attacker.call("echo", { text: "x" });
    loops = sleepLoops(attacker, 6, 1500, () => stop);
    // Until a real server has lost its place, for up to 22 s.
    const realCount = (view: { peer: string }[]) =>
      view.filter((b) => /^s[12]$/.test(b.peer)).length;
    let view = await backendsOf(attacker);
    const end = performance.now() + 22_000;
    while (performance.now() < end && realCount(view) === 2) {
      await sleep(500);
      view = await backendsOf(attacker);
    }
    stop = true;
    await loops;
    const summary = `dialed after the attack: ${
      view.map((b) => `${b.peer} ${b.state}`).join(", ")
    }; load ${Deno.loadavg()[0]}`;
    console.log(summary);
    assert.equal(realCount(view), 2, `both real servers keep their places (${summary})`);
  } finally {
    stop = true;
    attacker?.close();
    await loops;
    for (const s of sockets) s.destroy();
    for (const l of liars) await l.close(0);
    await stopAll([lb, ...reals, binder]);
  }
});
