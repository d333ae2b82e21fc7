/**
 * `dist balancer --threads N`: several event loops accept on one port
 * (SO_REUSEPORT), each with its own backend connections and health checks.
 */
import assert from "node:assert/strict";
import type { Peer } from "../wire/mod.ts";
import { runDist } from "./helpers/dist.ts";
import {
  backendsOf,
  type BalancerProcess,
  connectTo,
  eventually,
  startBalancer,
  startServers,
  stopAll,
} from "./helpers/balancer.ts";

/** Connections opened per check: with two threads, all on one is a 2^-31 chance. */
const CONNECTIONS = 32;

/** A balancer with `--threads 2`, once both threads accept. */
async function threaded(servers: Awaited<ReturnType<typeof startServers>>) {
  const lb = await startBalancer(servers, ["--threads", "2"]);
  await eventually(
    () => Promise.resolve(lb.stderr().includes("Accepting on 2 threads")),
    10_000,
    "both threads accepting",
  );
  return lb;
}

/** `sys.stats` of the thread behind each connection. */
async function statsOf(peers: Peer[]) {
  return await Promise.all(
    peers.map((p) => p.call("sys.stats") as Promise<Record<string, number>>),
  );
}

function closeAll(peers: Peer[]) {
  for (const p of peers) p.close();
}

async function connections(lb: BalancerProcess): Promise<Peer[]> {
  return await Promise.all(Array.from({ length: CONNECTIONS }, () => connectTo(lb.address)));
}

Deno.test("balancer --threads 2: requests over many connections are all answered, by both threads", async () => {
  const servers = await startServers(2);
  const lb = await threaded(servers);
  let peers: Peer[] = [];
  try {
    peers = await connections(lb);
    const sums = await Promise.all(
      peers.flatMap((p, i) =>
        Array.from({ length: 5 }, (_, j) => p.call("add", { a: i, b: j }) as Promise<number>)
      ),
    );
    assert.deepEqual(sums, peers.flatMap((_, i) => [0, 1, 2, 3, 4].map((j) => i + j)));
    const stats = await statsOf(peers);
    const byThread = new Map<number, number>();
    for (const s of stats) {
      assert.equal(s.threads, 2);
      byThread.set(s.thread, s.requests);
    }
    assert.deepEqual([...byThread.keys()].sort(), [0, 1], "both threads took connections");
    const perThread = [...byThread.values()];
    assert.ok(perThread.every((n) => n > 0), `each thread forwarded some: ${perThread}`);
    assert.equal(perThread[0] + perThread[1], CONNECTIONS * 5, "every request counted once");
  } finally {
    closeAll(peers);
    await stopAll([lb, ...servers]);
  }
});

Deno.test("balancer --threads 2: a killed backend is taken out in both threads; SIGTERM stops cleanly", async () => {
  const servers = await startServers(2);
  const lb = await threaded(servers);
  let peers: Peer[] = [];
  try {
    peers = await connections(lb);
    const victim = servers[1].address;
    await servers[1].stop("SIGKILL");
    await eventually(
      async () => {
        const views = await Promise.all(peers.map((p) => backendsOf(p)));
        return views.every((list) => list.find((b) => b.name === victim)?.state === "down");
      },
      10_000,
      `${victim} down in every thread`,
    );
    const stats = await statsOf(peers);
    assert.deepEqual(new Set(stats.map((s) => s.thread)), new Set([0, 1]));
    assert.ok(stats.every((s) => s.healthy === 1), "one healthy backend in each thread");
    const echoes = await Promise.all(peers.map((p, i) => p.call("echo", { text: `e${i}` })));
    assert.deepEqual(echoes, peers.map((_, i) => `e${i}`));
    closeAll(peers);
    peers = [];
    const { code, stderr, killed } = await lb.stop("SIGTERM");
    assert.equal(killed, false, stderr);
    assert.equal(code, 0, stderr);
    assert.match(stderr, /Stopped after/);
    assert.doesNotMatch(stderr, /thread \d failed/);
  } finally {
    closeAll(peers);
    await stopAll([lb, ...servers]);
  }
});

Deno.test("balancer --threads: a bad count, or --mode tcp with threads, is refused with exit 2", async () => {
  for (
    const args of [["--threads", "0"], ["--threads", "abc"], ["--mode", "tcp", "--threads", "2"]]
  ) {
    const r = await runDist(["balancer", "--port", "0", "--backends", "127.0.0.1:1", ...args]);
    assert.equal(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
    assert.match(r.stderr, /^dist: .*--threads/, args.join(" "));
  }
});
