/**
 * The binder suite: the registry's three figures.
 *
 * 1. `binder.lookup` throughput on one binder, 64 in flight over one
 *    connection (`dist client --bench --op 'binder.lookup {…}'`), against a
 *    service of 3 instances (target ≥ 100,000 lookups/s); beside it, in the
 *    same round, `echo` against `dist server` at c=64: the RPC floor of this
 *    machine at that moment, so the ratio says what the registry costs.
 * 2. Replication delay: a registration sent to binder A, until binder B
 *    announces it (`binder.changed` to a watcher of B), one at a time, p50 and
 *    p99 over 1,000 registrations (target p99 ≤ 10 ms). It includes the
 *    register request's way to A and the notification's way back from B, so
 *    it bounds the replication delay from above.
 * 3. Catch-up: binder B started next to binder A holding 10,000 instances;
 *    time from B's "Listening on" line until its first answer, which (B
 *    answers only once caught up) lists the 100 instances of the last of 100
 *    services and counts 10,000 (target ≤ 1 s); and from B's spawn, which
 *    adds the runtime's start-up.
 *
 * Each round measures everything; figures are medians over the rounds.
 */
import { startDist } from "../tests/helpers/dist.ts";
import { connectTo } from "../tests/helpers/binder.ts";
import { type BenchFlags, clientBench, Rounds } from "./_common.ts";
import type { Peer } from "../wire/mod.ts";

const SERVICE_OP = 'binder.lookup {"service":"bench"}';

/** p-th quantile of unsorted numbers. */
function quantile(xs: number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil(q * s.length) - 1)];
}

async function lookupRound(flags: BenchFlags, rounds: Rounds, round: number) {
  const binder = await startDist(["binder", "--port", "0"]);
  const server = await startDist(["server", "--port", "0"]);
  const peer = await connectTo(binder.address);
  try {
    for (let port = 5001; port <= 5003; port++) {
      await peer.call("binder.register", {
        service: "bench",
        host: "127.0.0.1",
        port,
        ttl_ms: 3_600_000,
      });
    }
    const load = ["--concurrency", "64", "--duration", flags.duration];
    const runLookups = () => clientBench(binder.address, ["--op", SERVICE_OP, ...load]);
    const runEcho = () => clientBench(server.address, load);
    // Alternate which side goes first from round to round.
    const [lookups, echo] = round % 2 === 1
      ? [await runLookups(), await runEcho()]
      : await (async () => {
        const e = await runEcho();
        return [await runLookups(), e];
      })();
    if (lookups.ok !== lookups.requests) {
      throw new Error(`Lookup errors: ${JSON.stringify(lookups.errors)}`);
    }
    rounds.add("lookup_c64_per_s", lookups.rps);
    rounds.add("lookup_c64_p99_ms", lookups.latency_ms.p99);
    rounds.add("echo_c64_rps", echo.rps);
    rounds.add("lookup_to_echo_ratio", lookups.rps / echo.rps);
  } finally {
    peer.close();
    await Promise.all([binder.stop(), server.stop()]);
  }
}

/** Two binders listing each other, on ports the first one picks. */
async function pair(extra: string[] = []) {
  const a = await startDist(["binder", "--port", "0", ...extra]);
  const b = await startDist([
    "binder",
    "--port",
    "0",
    "--peers",
    a.address,
  ]);
  return { a, b };
}

async function replicationRound(count: number, rounds: Rounds) {
  // All from this one client: past the default --max-per-source (1,000) they were OVERLOADED.
  const { a, b } = await pair(["--max-per-source", String(count)]);
  let toA: Peer | undefined;
  let fromB: Peer | undefined;
  try {
    const seen = new Map<string, () => void>();
    [toA, fromB] = await Promise.all([
      connectTo(a.address),
      connectTo(b.address, "client", (method, params) => {
        const p = params as { service: string; instances: unknown[] };
        if (method === "binder.changed" && p.instances.length > 0) seen.get(p.service)?.();
      }),
    ]);
    // b dials a; wait until the link is up both ways before measuring.
    for (let i = 0; i < 200; i++) {
      const stats = await fromB.call("sys.stats") as { replication: { rounds: number } };
      if (stats.replication.rounds > 0) break;
      await new Promise((r) => setTimeout(r, 25));
    }
    await Promise.all(
      Array.from({ length: count }, (_, i) => fromB!.call("binder.watch", { service: `rep-${i}` })),
    );
    const delays: number[] = [];
    for (let i = 0; i < count; i++) {
      const service = `rep-${i}`;
      const arrived = new Promise<void>((resolve) => seen.set(service, resolve));
      const t0 = performance.now();
      toA.call("binder.register", { service, host: "127.0.0.1", port: 10_000 + i });
      await arrived;
      delays.push(performance.now() - t0);
      seen.delete(service);
    }
    rounds.add("replication_p50_ms", quantile(delays, 0.5));
    rounds.add("replication_p99_ms", quantile(delays, 0.99));
    rounds.add("replication_max_ms", Math.max(...delays));
  } finally {
    toA?.close();
    fromB?.close();
    await Promise.all([a.stop(), b.stop()]);
  }
}

async function catchUpRound(count: number, rounds: Rounds) {
  const a = await startDist(["binder", "--port", "0", "--max-per-source", String(count)]);
  const toA = await connectTo(a.address);
  let b: Awaited<ReturnType<typeof startDist>> | undefined;
  let toB: Peer | undefined;
  try {
    const services = 100;
    const perService = count / services;
    // Registered 500 at a time (pipelined on one connection).
    for (let start = 0; start < count; start += 500) {
      await Promise.all(Array.from({ length: Math.min(500, count - start) }, (_, k) => {
        const i = start + k;
        return toA.call("binder.register", {
          service: `bulk-${i % services}`,
          host: "127.0.0.1",
          port: 10_000 + Math.floor(i / services),
          ttl_ms: 3_600_000,
        });
      }));
    }
    const spawned = performance.now();
    b = await startDist(["binder", "--port", "0", "--peers", a.address]);
    const listening = performance.now();
    toB = await connectTo(b.address);
    const list = await toB.call("binder.list", { service: `bulk-${services - 1}` }) as {
      instances: unknown[];
    };
    const answered = performance.now();
    const stats = await toB.call("sys.stats") as { instances: number };
    if (list.instances.length !== perService || stats.instances !== count) {
      throw new Error(
        `Catch-up answered ${list.instances.length}/${perService} and ${stats.instances}/${count}`,
      );
    }
    const pulled = /pulled (\d+), sent \d+ in (\d+) ms/.exec(b.stderr());
    rounds.add("catchup_listening_to_answer_ms", answered - listening);
    rounds.add("catchup_spawn_to_answer_ms", answered - spawned);
    if (pulled) rounds.add("catchup_pull_ms", Number(pulled[2]));
  } finally {
    toA.close();
    toB?.close();
    await Promise.all([a.stop(), b?.stop()]);
  }
}

export async function run(flags: BenchFlags): Promise<Record<string, number>> {
  const registrations = flags.quick ? 200 : 1000;
  const instances = flags.quick ? 2000 : 10_000;
  console.log(
    `${flags.runs} round(s); lookups ${flags.duration} at c=64 (echo on a server beside it); ` +
      `replication over ${registrations} registrations; catch-up of ${instances} instances`,
  );
  const rounds = new Rounds();
  for (let round = 1; round <= flags.runs; round++) {
    await lookupRound(flags, rounds, round);
    await replicationRound(registrations, rounds);
    await catchUpRound(instances, rounds);
    rounds.printRound("binder", round);
  }
  const m = rounds.medians();
  const n = (x: number) => Math.round(x).toLocaleString("en-US");
  console.log(
    `binder.lookup c=64     ${n(m.lookup_c64_per_s)} lookups/s (target ≥ 100,000), p99 ` +
      `${m.lookup_c64_p99_ms} ms; echo on a server beside it ${n(m.echo_c64_rps)} req/s ` +
      `(ratio ${m.lookup_to_echo_ratio.toFixed(2)})`,
  );
  console.log(
    `replication A→B        p50 ${m.replication_p50_ms.toFixed(2)} ms, p99 ` +
      `${m.replication_p99_ms.toFixed(2)} ms (target ≤ 10 ms), max ${
        m.replication_max_ms.toFixed(1)
      } ms`,
  );
  console.log(
    `catch-up ${n(instances)}       listening → correct answer ${
      n(m.catchup_listening_to_answer_ms)
    } ms (target ≤ 1,000); spawn → answer ${n(m.catchup_spawn_to_answer_ms)} ms; pull ${
      n(m.catchup_pull_ms ?? NaN)
    } ms`,
  );
  return m;
}
