/**
 * Issue 16: memory comes back when workers leave. 3,000 fake workers took a
 * balancer from 60 to 220 MiB, which stayed after they left (what they held
 * was garbage, but an idle process neither collected it nor gave V8's pages
 * back). Here 1,000 workers register, answer health checks, and leave; the
 * balancer's RSS must come back down: it gives back at least half of what
 * they took.
 */
import assert from "node:assert/strict";
import { dial, type Peer } from "../wire/mod.ts";
import { connectTo, eventually, startBalancer, stopAll } from "./helpers/balancer.ts";

const WORKERS = 1000;

interface Stats {
  rss_bytes: number;
  workers: number;
}

Deno.test("memory that workers took comes back once they leave", async () => {
  const lb = await startBalancer([], [
    "--max-workers",
    String(WORKERS),
    "--check-interval",
    "1s",
  ]);
  const [host, port] = lb.workerAddress.split(":");
  const client = await connectTo(lb.address);
  const stats = async () => await client.call("sys.stats") as Stats;
  const mib = (b: number) => `${(b / 1048576).toFixed(1)} MiB`;
  const workers: Peer[] = [];
  try {
    const before = (await stats()).rss_bytes;
    for (let i = 0; i < WORKERS; i += 100) {
      workers.push(
        ...await Promise.all(Array.from({ length: 100 }, async (_, k) => {
          const name = `fake-${i + k}`;
          const peer = await dial({ host, port: Number(port) }, {
            role: "worker",
            name,
            heartbeatMs: 5000,
            onRequest: (method) => method === "sys.ping" ? { pong: true } : new Promise(() => {}),
          });
          await peer.call("worker.register", { name, capacity: 10_000 });
          return peer;
        })),
      );
    }
    const peak = await stats();
    assert.equal(peak.workers, WORKERS);
    for (const w of workers.splice(0)) w.close();
    // The most it held, while they were there or as they left (their garbage).
    let most = peak.rss_bytes;
    let after = peak.rss_bytes;
    await eventually(
      async () => {
        const s = await stats();
        after = s.rss_bytes;
        most = Math.max(most, after);
        // At least half of what they took is given back (without the
        // collection RSS stayed at its most, or rose).
        return s.workers === 0 && after - before <= (most - before) / 2;
      },
      15_000,
      "the balancer's RSS back down",
    ).catch((err) => {
      throw new Error(
        `${err.message}: RSS ${mib(before)} before, ${mib(peak.rss_bytes)} with ${WORKERS} ` +
          `workers, at most ${mib(most)}, ${mib(after)} after they left`,
      );
    });
    console.log(
      `RSS ${mib(before)} before, ${mib(peak.rss_bytes)} with ${WORKERS} workers, at most ` +
        `${mib(most)}, ${mib(after)} after they left`,
    );
  } finally {
    for (const w of workers) w.close();
    client.close();
    await stopAll([lb]);
  }
});
