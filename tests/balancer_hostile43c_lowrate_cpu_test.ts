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
import { cpuMs, type DistProcess, startDist } from "./helpers/dist.ts";
import { sleep } from "./helpers/raw.ts";

/** Calls a second, one at a time, and how long each measured window lasts. */
const RATE = 50;
const WINDOW_MS = 3_000;
/** Windows, alternated between the two balancers (4 each). */
const ROUNDS = 8;
/**
 * Most the raw reads may cost over the runtime's reads for the same calls, in all: the bug took
 * about 1.6x; under load each window's CPU swings, so the sum of 4 alternated windows is compared.
 */
const BOUND = 1.3;

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

Deno.test("at 50 calls a second the balancer takes no more CPU with raw reads than with the runtime's (hostile43c C1)", async () => {
  const servers = await startServers(2);
  const raw = await balancer(servers, {});
  const runtime = await balancer(servers, { DIST_TCP_READS: "runtime" });
  const clients = [await connectTo(raw.address), await connectTo(runtime.address)];
  try {
    // Past the 8 flushes after which a connection is read through our epoll.
    for (const c of clients) for (let i = 0; i < 20; i++) await c.call("add", { a: i, b: 1 });
    await sleep(500);
    const ms: number[][] = [[], []];
    for (let round = 0; round < ROUNDS; round++) {
      const side = round % 2;
      const pid = [raw, runtime][side].child.pid;
      const before = cpuMs(pid);
      const start = performance.now();
      for (let i = 0; performance.now() - start < WINDOW_MS; i++) {
        assert.equal(await clients[side].call("add", { a: i, b: 1 }), i + 1);
        const next = start + ((i + 1) * 1000) / RATE;
        await sleep(Math.max(0, next - performance.now()));
      }
      ms[side].push(cpuMs(pid) - before);
    }
    const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
    const [r, t] = [sum(ms[0]), sum(ms[1])];
    const shown = (xs: number[]) => xs.map((x) => x.toFixed(1)).join(", ");
    const summary = `balancer CPU ms per ${WINDOW_MS} ms window at ${RATE}/s: raw reads ${
      shown(ms[0])
    }, runtime reads ${shown(ms[1])}`;
    console.log(summary);
    assert.ok(r <= t * BOUND + 20, `raw reads cost at most ${BOUND}x (${summary})`);
  } finally {
    for (const c of clients) c.close();
    await stopAll([raw, runtime, ...servers]);
  }
});
