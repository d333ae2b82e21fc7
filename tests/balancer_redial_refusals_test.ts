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
import { PACE_PER_S } from "../wire/accept_pace.ts";

/**
 * Refusals a connection taken or put out at most: its first read (its hello and the requests
 * that came with it, ~15) and no more; 1.0-1.8 here at load 9, hundreds when each was read at
 * line rate (W8).
 */
const REFUSED_EACH = 20;

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
    // A loaded balancer answers late, not never.
    // deno-lint-ignore no-explicit-any
    const stats = () => legit.call("sys.stats", undefined, { timeout: 30_000 }) as Promise<any>;
    // The queue fills, the first budget is spent and the source is paced: polled, not slept.
    const deadline = performance.now() + 60_000;
    let before = await stats();
    while (!(before.connection_limits.paced.paced_waited > 0) && performance.now() < deadline) {
      await sleep(250);
      before = await stats();
    }
    await sleep(1000);
    // Counts over one span the balancer's two snapshots lie within (from before the first ask to
    // after the second answer), not rates of two spans taken at different times, which moved
    // with the machine's load (f47a).
    const tBefore = performance.now();
    before = await stats();
    const t0 = performance.now();
    const beside = await closedLoop(legit, 4, 4000);
    const after = await stats();
    const seconds = (performance.now() - t0) / 1000;
    const span = (performance.now() - tBefore) / 1000;
    const out = await attack.stop();
    attack = undefined;
    const refused = after.overloaded - before.overloaded;
    const taken = after.connection_limits.accepted - before.connection_limits.accepted;
    const putOut = after.connection_limits.paced.paced_refused -
      before.connection_limits.paced.paced_refused;
    const mostTaken = PACE_PER_S * span + PACE_PER_S;
    const summary = `legit ${alone.toFixed(0)} calls/s alone, ${beside.toFixed(0)} beside (${
      seconds.toFixed(1)
    } s); took ${taken} connections (at most ${
      mostTaken.toFixed(0)
    }), put out ${putOut}, refused ${refused} (${
      (refused / Math.max(1, taken + putOut)).toFixed(1)
    } a connection); ${out} connections; watched ${after.refused_watched}, redialing ${after.redialing_sources}, looks ${after.refused_looks}; closed ones' bytes ${after.refused_closed_bytes}; load ${
      Deno.loadavg()[0]
    }`;
    console.log(summary);
    assert.ok(after.overloaded > 0, `the redialers were refused (${summary})`);
    assert.ok(Number(out.match(/made (\d+)/)?.[1]) > 80, `they redialed (${summary})`);
    assert.ok(beside > 0, `the other address is served (${summary})`);
    // Main read each new connection afresh, refused at line rate; now it takes them at a pace,
    // and reads one only until its first refusal.
    assert.ok(taken <= mostTaken, `connections taken within the pace (${summary})`);
    assert.ok(refused <= REFUSED_EACH * (taken + putOut), `refusals a connection (${summary})`);
  } finally {
    legit.close();
    await attack?.stop();
    await stopAll([balancer, ...servers]);
  }
});
