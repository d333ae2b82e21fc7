/**
 * review45 R10 (c55e3dc, the fix of review45 R3): in a `--service` pool an
 * instance the binders named may now witness against one that joined
 * after it. Which joined first is not who is trustworthy: a stranger
 * registers its liar (answers every request at once, `sleep` too) at the
 * open binder before the real servers join — at the balancer's start, or
 * whenever a real server restarts (deploys), it joins again after the
 * liar. Then one client's `sleep`s past `--timeout` are replayed on the
 * liar, it answers, it is the sound witness, the cap is lifted, and both
 * real servers are out together: hostile45a K-A2 in a pure service pool.
 */
import assert from "node:assert/strict";
import type net from "node:net";
import { backendsOf, connectTo, startBalancer, stopAll } from "./helpers/balancer.ts";
import { startDist } from "./helpers/dist.ts";
import { connectTo as binderConn, startService } from "./helpers/binder.ts";
import { answeredBy, outTogether, quick, sleepLoops } from "./helpers/hostile44.ts";
import { listen, type Peer } from "../wire/mod.ts";
import { sleep } from "./helpers/raw.ts";
import type { DistProcess } from "./helpers/dist.ts";

Deno.test("review45 R10: a liar registered before the real servers joined does not take both out", async () => {
  const binder = await startDist(["binder", "--port", "0"]);
  const liar = listen({
    port: 0,
    role: "server",
    name: "quick",
    onRequest: (method, params) => quick(method, (params ?? {}) as Record<string, unknown>),
  });
  const mallory = await binderConn(binder.address);
  await mallory.call("binder.register", {
    service: "compute",
    host: "127.0.0.1",
    port: liar.addr.port,
    ttl_ms: 600_000,
  });
  mallory.close();
  const service = ["--service", "compute", "--binders", binder.address];
  const balancer = await startBalancer([], [...service, "--timeout", "1s"]);
  const servers: DistProcess[] = [];
  const sockets: net.Socket[] = [];
  let attacker: Peer | undefined;
  let stop = false;
  try {
    attacker = await connectTo(balancer.address);
    // The liar is dialed and answers; then the real servers join (started, or restarted).
    for (let i = 0; i < 100; i++) {
      await attacker.call("echo", { text: `x${i}` });
      if ((await backendsOf(attacker)).some((b) => b.peer === "quick" && b.served > 5)) break;
      await sleep(20);
    }
    servers.push(await startService("compute", binder.address, ["--name", "s1"]));
    servers.push(await startService("compute", binder.address, ["--name", "s2"]));
    for (let i = 0; i < 300; i++) {
      await attacker.call("echo", { text: `y${i}` });
      const view = await backendsOf(attacker);
      if (i >= 60 && ["s1", "s2"].every((n) => view.some((b) => b.peer === n && b.served > 5))) {
        break;
      }
    }
    const loops = sleepLoops(attacker, 6, 1500, () => stop);
    const [bothOut, looks] = await outTogether(
      balancer.address,
      12_000,
      (b) => b.peer === "s1" || b.peer === "s2",
    );
    stop = true;
    await loops;
    const by = await answeredBy(balancer.address, 3000, sockets);
    const summary = `both real servers out in ${bothOut} of ${looks} looks; honest calls ` +
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
