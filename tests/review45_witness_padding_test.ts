/**
 * review45 R6 (f2b9a42, hostile45a K-A2's fix): the liar registered at the
 * open binder is no longer the witness that lifts the ejection cap, but the
 * cap itself is "half of the pool", and the pool counts every instance the
 * binder names, down or not. So the same attacker also registers a few
 * addresses where nothing listens (or, since 67e37f0, the balancer's own
 * port: down, "is a balancer"): the pool grows, half of it is more than
 * the two --backends servers, and one client's `sleep`s past `--timeout`
 * (replayed on the liar, which answers at once) take both servers out
 * together again: H-A2 / K-A2's outcome, through padding. c55e3dc counts
 * the cap over backends up or out only: padding with instances that are
 * up (four more liars answering at once, one process) does the same.
 */
import assert from "node:assert/strict";
import type net from "node:net";
import { backendsOf, connectTo, startBalancer, startServers, stopAll } from "./helpers/balancer.ts";
import { startDist } from "./helpers/dist.ts";
import { connectTo as binderConn } from "./helpers/binder.ts";
import { answeredBy, outTogether, quick, sleepLoops } from "./helpers/hostile44.ts";
import { listen, type Listener, type Peer } from "../wire/mod.ts";

Deno.test("review45 R6: five lying instances registered at an open binder do not take both --backends servers out (K-A2 with padding)", async () => {
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
  const pads: Listener[] = [];
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
    // The padding: four more such instances (up, as the cap now counts only those up or out).
    for (let i = 0; i < 4; i++) {
      const pad = listen({
        port: 0,
        role: "server",
        name: "quick",
        onRequest: (method, params) => quick(method, (params ?? {}) as Record<string, unknown>),
      });
      pads.push(pad);
      const port = pad.addr.port;
      await mallory.call("binder.register", {
        service: "compute",
        host: "127.0.0.1",
        port,
        ttl_ms: 600_000,
      });
    }
    mallory.close();
    attacker = await connectTo(balancer.address);
    // Until the instance is dialed and has answered.
    for (let i = 0; i < 200; i++) {
      await attacker.call("echo", { text: `x${i}` });
      const view = await backendsOf(attacker);
      if (i >= 60 && view.some((b) => b.peer === "quick" && b.served > 5)) break;
    }
    const loops = sleepLoops(attacker, 6, 1500, () => stop);
    const [bothOut, looks] = await outTogether(
      balancer.address,
      12_000,
      (b) => (b as { source?: string }).source === "backends",
    );
    stop = true;
    await loops;
    const by = await answeredBy(balancer.address, 3000, sockets);
    const summary =
      `both --backends servers out in ${bothOut} of ${looks} looks (pool padded with 4 more such instances); honest calls ` +
      `then answered by ${JSON.stringify(Object.fromEntries(by))}; load ${Deno.loadavg()[0]}`;
    console.log(summary);
    assert.equal(bothOut, 0, `the servers are never out together (${summary})`);
  } finally {
    stop = true;
    attacker?.close();
    for (const s of sockets) s.destroy();
    await liar.close(0);
    for (const p of pads) await p.close(0);
    await stopAll([balancer, ...servers, binder]);
  }
});
