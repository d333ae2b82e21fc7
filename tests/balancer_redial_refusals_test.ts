/**
 * hostile41a W8: the read-again budget of a source's refused connections
 * (8 MiB given since their refusal, pressure.ts backOff) counted open
 * connections only, so 40 non-readers from one address that closed and
 * dialed again once paused were each read on afresh: refused at line rate
 * again (P9 through reconnects), and a client of another address fell from
 * 7,400-17,900 to 73-647 calls a second. Now what a closed one was given
 * still counts for its source, forgotten at 8 MiB per 10 s: a new
 * connection of that source is left unread from its first refusal.
 */
import assert from "node:assert/strict";
import { connectTo, startBalancer, startServers, stopAll } from "./helpers/balancer.ts";
import { sleep } from "./helpers/raw.ts";
import { type RedialAttack, startRedialers } from "./helpers/redial_attack.ts";
import type { Peer } from "../wire/mod.ts";

/** Calls answered in `ms` by `c` loops of `add` in turn on `peer`. */
async function closedLoop(peer: Peer, c: number, ms: number): Promise<number> {
  let answered = 0;
  const end = performance.now() + ms;
  await Promise.all(Array.from({ length: c }, async () => {
    for (let i = 0; performance.now() < end; i++) {
      assert.equal(await peer.call("add", { a: i, b: 1 }, { timeout: 10_000 }), i + 1);
      answered++;
    }
  }));
  return answered / (ms / 1000);
}

Deno.test("40 non-readers of one address that redial when paused: refusals stay bounded, another address is served", async () => {
  const servers = await startServers(1);
  const balancer = await startBalancer(servers, ["--queue", "1000"]);
  const legit = await connectTo(balancer.address);
  let attack: RedialAttack | undefined;
  try {
    const alone = await closedLoop(legit, 4, 2000);
    attack = await startRedialers(balancer.port, 40, "127.0.0.2");
    const stats = () => legit.call("sys.stats") as Promise<Record<string, number>>;
    // The queue fills and the first budget is spent.
    await sleep(3000);
    const before = await stats();
    const t0 = performance.now();
    const beside = await closedLoop(legit, 4, 4000);
    const after = await stats();
    const seconds = (performance.now() - t0) / 1000;
    const out = await attack.stop();
    attack = undefined;
    const refused = (after.overloaded - before.overloaded) / seconds;
    const summary = `legit ${alone.toFixed(0)} calls/s alone, ${
      beside.toFixed(0)
    } beside; refused ${
      refused.toFixed(0)
    }/s; ${out} connections; watched ${after.refused_watched}, redialing ${after.redialing_sources}, looks ${after.refused_looks}; closed ones' bytes ${after.refused_closed_bytes}; load ${
      Deno.loadavg()[0]
    }`;
    console.log(summary);
    assert.ok(after.overloaded > 0, `the redialers were refused (${summary})`);
    assert.ok(Number(out.match(/made (\d+)/)?.[1]) > 80, `they redialed (${summary})`);
    // Generous for a loaded 2-core machine; main: ~1-4 % (the reviewer's 73-647 of 7,400-17,900).
    assert.ok(beside >= alone * 0.3, `the other address keeps its rate (${summary})`);
    assert.ok(refused < 20_000, `refusals bounded (${summary})`);
  } finally {
    legit.close();
    await attack?.stop();
    await stopAll([balancer, ...servers]);
  }
});
