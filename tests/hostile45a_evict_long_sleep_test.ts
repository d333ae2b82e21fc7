/**
 * hostile45a K-A1: stop 44's H-A3 fix (worker_sources.ts `idle`: an
 * ejected worker gives its `--max-workers` slot up only after a window,
 * WINDOW_MS, with no answer, late ones included: Backend.lateAt) holds
 * against `sleep 1500` (a late answer half a second past `--timeout`), but
 * not against a client whose requests outlast the window: `sleep 20000`.
 * The real worker, taken out by the timeouts (replayed on fakes that
 * answer at once), is out for 10 s, then 20 s …, and gets no task while
 * out; its late answers come 20 s after each sleep was sent. So 10 s after
 * it was taken out it is "idle", and the attacker's next fake takes its
 * slot: the balancer closes the real worker.
 *
 * A user checks that both real workers are still registered after the
 * attack, and that none of them was closed.
 */
import assert from "node:assert/strict";
import type net from "node:net";
import { backendsOf, connectTo, startBalancer, stopAll } from "./helpers/balancer.ts";
import { sleep } from "./helpers/raw.ts";
import { realWorker } from "./helpers/source_workers.ts";
import { registerLiar, sleepLoops } from "./helpers/hostile44.ts";
import type { Peer } from "../wire/mod.ts";

Deno.test("a client's sleeps longer than the window beside fakes do not evict the real workers from --max-workers (hostile45a K-A1)", async () => {
  const balancer = await startBalancer([], ["--max-workers", "4", "--timeout", "1s"]);
  const sockets: net.Socket[] = [];
  const reals: Peer[] = [];
  let attacker: Peer | undefined;
  let stop = false;
  let loops: Promise<void> | undefined;
  const fake = (name: string) => registerLiar(balancer.workerAddress, name, sockets);
  try {
    for (const name of ["w1", "w2"]) reals.push(await realWorker(balancer.workerAddress, name));
    for (const name of ["q1", "q2"]) assert.equal(await fake(name), "registered");
    attacker = await connectTo(balancer.address);
    for (let i = 0; i < 40; i++) assert.equal(await attacker.call("add", { a: i, b: 1 }), i + 1);
    // Six loops of sleeps far past --timeout and past the 10 s window; a fresh fake tries for a
    // slot every 300 ms for 17 s.
    loops = sleepLoops(attacker, 6, 20_000, () => stop);
    const tries: string[] = [];
    const end = performance.now() + 17_000;
    for (let k = 3; performance.now() < end && reals.every((r) => !r.isClosed); k++) {
      tries.push(`q${k} ${await fake(`q${k}`)}`);
      await sleep(300);
    }
    stop = true;
    const names = (await backendsOf(attacker)).map((b) => b.name);
    const closed = reals.filter((r) => r.isClosed).length;
    const summary = `registered ${names.join(",")}; real workers closed ${closed} of 2; fakes: ${
      tries.filter((t) => t.endsWith("registered")).length
    } of ${tries.length} took a slot; load ${Deno.loadavg()[0]}`;
    console.log(summary);
    assert.equal(closed, 0, `no real worker is closed (${summary})`);
    assert.ok(names.includes("w1") && names.includes("w2"), `the real workers stay (${summary})`);
  } finally {
    stop = true;
    attacker?.close();
    await loops; // their sleeps fail as the connection closes
    for (const r of reals) r.close();
    for (const s of sockets) s.destroy();
    await stopAll([balancer]);
  }
});
