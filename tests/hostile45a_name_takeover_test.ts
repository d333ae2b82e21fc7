/**
 * hostile45a K-A4: a real worker's name (and connection) taken over by
 * anyone, with no `--max-workers` pressure at all. workers.ts `keepsName`:
 * a live holder out for its answers loses its name once it has answered
 * nothing in time for NAME_SILENCE_MS (10 s), and a newcomer of any
 * source (no credential by default) registering under it closes the
 * holder's connection ("Worker w1 registered again: closing its previous
 * connection"). A client makes a real worker "out for its answers" at
 * will: its `sleep`s past `--timeout` are replayed on a worker of the
 * attacker's that answers at once (verify.ts), so the real worker is
 * guilty and out for 10 s, then 20 s …; while out it is sent nothing, so it
 * is silent; 10 s on, the attacker registers "w1" and the real w1 is
 * closed; `dist worker --name w1` redials and is refused "Worker name w1
 * is taken by a live worker at 127.0.0.9…" for as long as the attacker's
 * w1 (which answers at once) stays. Its clients' requests go to the
 * attacker's "w1".
 *
 * A user runs `dist worker --name w1` and checks its log says neither
 * closed nor refused after another client's slow requests.
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
import { sleep } from "./helpers/raw.ts";
import { registerLiar, sleepLoops } from "./helpers/hostile44.ts";
import type { Peer } from "../wire/mod.ts";

Deno.test("another client's slow requests do not let a stranger take a real worker's name (hostile45a K-A4)", async () => {
  const balancer = await startBalancer([], ["--timeout", "1s"]);
  const sockets: net.Socket[] = [];
  let real: WorkerProcess | undefined;
  let attacker: Peer | undefined;
  let stop = false;
  try {
    real = await startWorker(balancer.workerAddress, ["--name", "w1"]);
    assert.equal(await registerLiar(balancer.workerAddress, "q1", sockets), "registered");
    attacker = await connectTo(balancer.address);
    for (let i = 0; i < 40; i++) assert.equal(await attacker.call("add", { a: i, b: 1 }), i + 1);
    const loops = sleepLoops(attacker, 4, 1500, () => stop);
    // The attacker asks for the name every 500 ms, for up to 16 s.
    const tries: string[] = [];
    const end = performance.now() + 16_000;
    while (performance.now() < end) {
      const answer = await registerLiar(balancer.workerAddress, "w1", sockets, "mallory");
      tries.push(answer);
      if (answer === "registered") break;
      await sleep(500);
    }
    stop = true;
    await loops;
    await sleep(3000);
    const realLog = real.stderr();
    const closed = /closed|refused|taken/i.test(realLog);
    const by = new Map<string, number>();
    for (let i = 0; i < 20; i++) {
      const r = await attacker.request("add", { a: i, b: 1 }).catch(() => undefined);
      by.set(r?.by ?? "error", (by.get(r?.by ?? "error") ?? 0) + 1);
    }
    const summary =
      `the stranger's tries: ${tries.length}, last ${tries.at(-1)}; the real worker's log: ${
        JSON.stringify(realLog.split("\n").filter((l) => /closed|refused|taken/i.test(l)).slice(-2))
      }; ` +
      `20 calls after answered by ${JSON.stringify(Object.fromEntries(by))}; ` +
      `log: ${
        balancer.stderr().split("\n").filter((l) => l.includes("registered again")).join(" | ")
      }; load ${Deno.loadavg()[0]}`;
    console.log(summary);
    assert.ok(!closed, `the real worker is neither closed nor refused (${summary})`);
    assert.notEqual(tries.at(-1), "registered", `the name stays its own (${summary})`);
  } finally {
    stop = true;
    attacker?.close();
    await real?.stop();
    for (const s of sockets) s.destroy();
    await stopAll([balancer]);
  }
});
