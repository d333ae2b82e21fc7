/**
 * review45 R11 (c55e3dc, the fix of review44 R6): in a pool with no
 * server, a worker now witnesses against a candidate that answered at most
 * 3 requests in the window without failing. In a quiet pool that is every
 * real worker once one client's `sleep`s past `--timeout` fill its window:
 * the sleeps are replayed on the attacker's worker (from 127.0.0.9,
 * answering everything at once), it is the witness, the cap is lifted, and
 * both real workers are out together; the honest calls after go to the
 * attacker's worker alone (c45: 122 of 122; before: w2 59, q1 59). Before c55e3dc no worker witnessed and the cap kept
 * one real worker in (hostile44a H-A2's fix).
 */
import assert from "node:assert/strict";
import type net from "node:net";
import {
  connectTo,
  startBalancer,
  startWorker,
  stopAll,
  type WorkerProcess,
} from "./helpers/balancer.ts";
import { answeredBy, outTogether, registerLiar, sleepLoops } from "./helpers/hostile44.ts";
import type { Peer } from "../wire/mod.ts";

Deno.test("review45 R11: in a quiet pool of dial-in workers, a lying worker does not take both real workers out", async () => {
  const balancer = await startBalancer([], ["--timeout", "1s"]);
  const sockets: net.Socket[] = [];
  const workers: WorkerProcess[] = [];
  let attacker: Peer | undefined;
  let stop = false;
  try {
    workers.push(await startWorker(balancer.workerAddress, ["--name", "w1"]));
    workers.push(await startWorker(balancer.workerAddress, ["--name", "w2"]));
    assert.equal(await registerLiar(balancer.workerAddress, "q1", sockets), "registered");
    attacker = await connectTo(balancer.address);
    for (let i = 0; i < 40; i++) assert.equal(await attacker.call("add", { a: i, b: 1 }), i + 1);
    const loops = sleepLoops(attacker, 6, 1500, () => stop);
    const [bothOut, looks] = await outTogether(
      balancer.address,
      14_000,
      (b) => ["w1", "w2"].includes((b as { name?: string }).name ?? ""),
    );
    stop = true;
    await loops;
    const view = (await attacker.call("balancer.backends") as {
      name: string;
      state: string;
      reason: string;
    }[]).map((b) => `${b.name}:${b.state}${b.state === "up" ? "" : `(${b.reason})`}`).join(" ");
    const by = await answeredBy(balancer.address, 2000, sockets);
    const summary = `both real workers out in ${bothOut} of ${looks} looks; honest calls ` +
      `then answered by ${JSON.stringify(Object.fromEntries(by))}; backends then: ${view}; load ${
        Deno.loadavg()[0]
      }`;
    console.log(summary);
    const real = (by.get("w1") ?? 0) + (by.get("w2") ?? 0);
    let all = 0;
    for (const n of by.values()) all += n;
    // Before c55e3dc: one real worker stays in at the cap and answers half the honest calls.
    assert.ok(real * 4 >= all, `a real worker still serves once the attack stops (${summary})`);
  } finally {
    stop = true;
    attacker?.close();
    for (const s of sockets) s.destroy();
    await Promise.all(workers.map((w) => w.stop()));
    await stopAll([balancer]);
  }
});
