/**
 * hostile44a H-A3: c43's A3/A12 fix (worker_sources.ts `displaced`: a
 * worker that served and then stopped — out for its answers, or failing
 * with no result for 10 s — gives its `--max-workers` slot to a newcomer
 * of any source, whatever its share) lets an attacker evict real workers.
 * Its fakes answer every task at once (a `sleep` too); its client sends
 * `sleep`s past `--timeout`: a real worker's timeouts are replayed on a
 * fake, which answers, so the real worker is guilty and out for its
 * answers (H-A2's mechanism); with the slots full, the attacker's next
 * fake takes its place and the balancer closes the real worker. The
 * fakes never stop serving, so the real worker, registering again, is
 * refused OVERLOADED for good.
 *
 * A user checks that both real workers are still registered after the
 * attack, and that a real worker that left and comes back gets a slot.
 */
import assert from "node:assert/strict";
import type net from "node:net";
import { backendsOf, connectTo, startBalancer, stopAll } from "./helpers/balancer.ts";
import { sleep } from "./helpers/raw.ts";
import { realWorker } from "./helpers/source_workers.ts";
import { quick, rawPeer } from "./helpers/hostile44.ts";
import { DistError, type Peer } from "../wire/mod.ts";

Deno.test("a client's sleeps beside fakes that answer them at once do not evict the real workers from --max-workers (hostile44a H-A3)", async () => {
  const balancer = await startBalancer([], ["--max-workers", "4", "--timeout", "1s"]);
  const sockets: net.Socket[] = [];
  const reals: Peer[] = [];
  let attacker: Peer | undefined;
  let stop = false;
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
    // Six loops of sleeps past --timeout; a fresh fake tries for a slot every 500 ms.
    const a = attacker;
    const loops = Array.from({ length: 6 }, async () => {
      while (!stop) await a.call("sleep", { ms: 1500 }, { timeout: 10_000 }).catch(() => {});
    });
    const tries: string[] = [];
    for (let k = 3; k <= 24; k++) {
      tries.push(`q${k} ${await fake(`q${k}`)}`);
      await sleep(500);
    }
    stop = true;
    await Promise.all(loops);
    const names = (await backendsOf(attacker)).map((b) => b.name);
    const closed = reals.filter((r) => r.isClosed).length;
    let again = "not tried";
    try {
      reals.push(await realWorker(balancer.workerAddress, "w3"));
      again = "registered";
    } catch (e) {
      if (!(e instanceof DistError)) throw e;
      again = `${e.code}: ${e.message}`;
    }
    const summary = `registered ${names.join(",")}; real workers closed ${closed} of 2; ` +
      `a new real worker: ${again}; fakes: ${
        tries.filter((t) => t.endsWith("registered")).length
      } of ${tries.length} took a slot; load ${Deno.loadavg()[0]}`;
    console.log(summary);
    assert.ok(names.includes("w1") && names.includes("w2"), `the real workers stay (${summary})`);
  } finally {
    stop = true;
    attacker?.close();
    for (const r of reals) r.close();
    for (const s of sockets) s.destroy();
    await stopAll([balancer]);
  }
});
