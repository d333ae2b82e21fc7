/**
 * hostile43c C1: reads through our own epoll (wire/raw_reads.ts) were to
 * lower the balancer's CPU per request. At a low, steady rate they raise it:
 * every socket event keeps the loop busy for QUIET_WAITS ticks of 1 ms (each
 * a turn of the event loop) before the wait moves to another thread, and the
 * next request then comes back through that thread. At 50 calls/s on one
 * adopted connection the balancer took 4.6-5.2 % of a core against 3.0-3.2 %
 * with `DIST_TCP_READS=runtime` (3 alternated rounds of 8 s, load 7-10).
 * A user sees it in `top`: the same traffic, more CPU than before.
 */
import assert from "node:assert/strict";
import { connectTo, startServers, stopAll } from "./helpers/balancer.ts";
import { cpuSeconds, type DistProcess, startDist } from "./helpers/dist.ts";
import { sleep } from "./helpers/raw.ts";

/** Calls a second, one at a time, and how long each measured window lasts. */
const RATE = 50;
const WINDOW_MS = 5_000;
/** Most the raw reads may cost over the runtime's reads for the same calls. */
const BOUND = 1.25;

function balancer(servers: DistProcess[], env: Record<string, string>): Promise<DistProcess> {
  return startDist([
    "balancer",
    "--port",
    "0",
    "--worker-port",
    "0",
    "--backends",
    servers.map((s) => s.address).join(","),
  ], { env });
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

Deno.test("at 50 calls a second the balancer takes no more CPU with raw reads than with the runtime's (hostile43c C1)", async () => {
  const servers = await startServers(2);
  const raw = await balancer(servers, {});
  const runtime = await balancer(servers, { DIST_TCP_READS: "runtime" });
  const clients = [await connectTo(raw.address), await connectTo(runtime.address)];
  try {
    // Past the 8 flushes after which a connection is read through our epoll.
    for (const c of clients) for (let i = 0; i < 20; i++) await c.call("add", { a: i, b: 1 });
    await sleep(500);
    const ticks: number[][] = [[], []];
    for (let round = 0; round < 4; round++) {
      const side = round % 2;
      const pid = [raw, runtime][side].child.pid;
      const before = Math.round(cpuSeconds(pid) * 100);
      const start = performance.now();
      for (let i = 0; performance.now() - start < WINDOW_MS; i++) {
        assert.equal(await clients[side].call("add", { a: i, b: 1 }), i + 1);
        const next = start + ((i + 1) * 1000) / RATE;
        await sleep(Math.max(0, next - performance.now()));
      }
      ticks[side].push(Math.round(cpuSeconds(pid) * 100) - before);
    }
    const [r, t] = [median(ticks[0]), median(ticks[1])];
    const summary = `balancer CPU ticks per ${WINDOW_MS} ms window at ${RATE}/s: raw reads ${
      ticks[0].join(", ")
    }, runtime reads ${ticks[1].join(", ")}`;
    console.log(summary);
    assert.ok(r <= Math.max(t * BOUND, t + 2), `raw reads cost at most ${BOUND}x (${summary})`);
  } finally {
    for (const c of clients) c.close();
    await stopAll([raw, runtime, ...servers]);
  }
});
