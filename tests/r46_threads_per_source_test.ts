/**
 * review r46 R1 (of hostile46a G1's fix): under `--threads N` the balancer
 * gives each thread `--max-connections-per-source` / N, but the kernel
 * places a connection on a thread by a hash of its 4-tuple (SO_REUSEPORT),
 * not by source: one client's connections land unevenly, and a thread
 * refuses that client while the process holds fewer than the bound. An
 * honest client opening exactly its bound must get every one in.
 */
import assert from "node:assert/strict";
import type { Peer } from "../wire/mod.ts";
import { connectTo, eventually, startBalancer, startServers, stopAll } from "./helpers/balancer.ts";

async function alive(peer: Peer): Promise<boolean> {
  try {
    await peer.call("sys.ping", undefined, { timeout: 2000 });
    return true;
  } catch {
    return false;
  }
}

Deno.test("balancer --threads 2 --max-connections-per-source 8: one source's 8 connections are all taken (r46 R1)", async () => {
  const servers = await startServers(1);
  const lb = await startBalancer(servers, [
    "--threads",
    "2",
    "--max-connections-per-source",
    "8",
  ]);
  const short: number[] = [];
  try {
    await eventually(
      () => Promise.resolve(lb.stderr().includes("Accepting on 2 threads")),
      10_000,
      "both threads accepting",
    );
    // Six rounds: the 8 land 4/4 on the threads with chance 70/256 a round.
    for (let round = 0; round < 6; round++) {
      const peers: Peer[] = [];
      for (let i = 0; i < 8; i++) {
        try {
          peers.push(await connectTo(lb.address, 2000));
        } catch {
          // refused
        }
      }
      const kept = (await Promise.all(peers.map(alive))).filter((a) => a).length;
      for (const p of peers) p.close();
      if (kept < 8) short.push(kept);
      await new Promise((r) => setTimeout(r, 300));
    }
    assert.deepEqual(
      short,
      [],
      `rounds where one source got fewer than its 8 connections (kept per short round): ${short}`,
    );
  } finally {
    await stopAll([lb, ...servers]);
  }
});
