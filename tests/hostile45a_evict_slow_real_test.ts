/**
 * hostile45a K-A1: H-A3's fix (worker_sources.ts `idle`: a worker out for
 * its answers keeps its `--max-workers` slot while late answers show it
 * alive) holds for sleeps under the 10 s window. A client's `sleep`s that
 * run longer than 10 s past `--timeout` take a real worker out the same
 * way (replayed on the attacker's fakes, which answer them at once), and
 * its late answers come only after the window: for those seconds it looks
 * like a fake that holds every task, and an attacker's fake from another
 * address registering then takes its slot (the balancer closes the real
 * worker). A real worker that is merely slow on a slow method must keep
 * its slot and its name.
 *
 * A user checks that both real workers are still registered, under their
 * names, after the attack, and that a stranger could not take `w1`.
 */
import assert from "node:assert/strict";
import type net from "node:net";
import { backendsOf, connectTo, startBalancer, stopAll } from "./helpers/balancer.ts";
import { sleep } from "./helpers/raw.ts";
import { realWorker } from "./helpers/source_workers.ts";
import { quick, rawPeer } from "./helpers/hostile44.ts";
import type { Peer } from "../wire/mod.ts";

Deno.test("a client's sleeps longer than 10 s past --timeout do not give a real worker's slot or name to an attacker's fake (hostile45a K-A1)", async () => {
  const balancer = await startBalancer([], ["--max-workers", "4", "--timeout", "1s"]);
  const sockets: net.Socket[] = [];
  const reals: Peer[] = [];
  let attacker: Peer | undefined;
  let stop = false;
  let loops: Promise<void>[] = [];
  const fake = async (name: string) => {
    const register = await rawPeer(
      balancer.workerAddress,
      "127.0.0.9",
      { role: "worker", name },
      quick,
      sockets,
    );
    const m = await register({ method: "worker.register", params: { name, capacity: 16 } });
    return m.error === undefined ? "registered" : String((m.error as { code: string }).code);
  };
  try {
    for (const name of ["w1", "w2"]) reals.push(await realWorker(balancer.workerAddress, name));
    for (const name of ["q1", "q2"]) assert.equal(await fake(name), "registered");
    attacker = await connectTo(balancer.address);
    for (let i = 0; i < 40; i++) assert.equal(await attacker.call("add", { a: i, b: 1 }), i + 1);
    // Six loops of sleeps 11.5 s past --timeout; a fresh fake tries for a slot, and for the
    // name w1, every 500 ms.
    const a = attacker;
    loops = Array.from({ length: 6 }, async () => {
      while (!stop) await a.call("sleep", { ms: 12_500 }, { timeout: 30_000 }).catch(() => {});
    });
    const tries: string[] = [];
    const t0 = performance.now();
    for (let k = 3; performance.now() - t0 < 26_000; k++) {
      tries.push(`q${k} ${await fake(`q${k}`)}`);
      tries.push(`w1 ${await fake("w1")}`);
      await sleep(500);
    }
    stop = true;
    const view = await backendsOf(attacker);
    const closed = reals.filter((r) => r.isClosed).length;
    const summary = `registered ${view.map((b) => `${b.name}:${b.state}`).join(",")}; ` +
      `real workers closed ${closed} of 2; fakes: ${
        tries.filter((t) => t.startsWith("q") && t.endsWith("registered")).length
      } took a slot, ${
        tries.filter((t) => t.startsWith("w1") && t.endsWith("registered")).length
      } took w1, of ${tries.length / 2} tries each; load ${Deno.loadavg()[0]}`;
    console.log(summary);
    assert.equal(closed, 0, `the real workers stay connected (${summary})`);
    assert.ok(
      view.filter((b) => b.name === "w1" || b.name === "w2").length === 2 &&
        !tries.some((t) => t.startsWith("w1") && t.endsWith("registered")),
      `the real workers keep their slots and names (${summary})`,
    );
  } finally {
    stop = true;
    attacker?.close(); // ends the sleeps still waiting
    await Promise.all(loops);
    for (const r of reals) r.close();
    for (const s of sockets) s.destroy();
    await stopAll([balancer]);
  }
});
