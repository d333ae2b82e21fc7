/**
 * `dist balancer --threads N`: the same balancer with 1 and with 2 threads
 * over the same 3 `dist server`s, alternating which goes first each round:
 * throughput of `echo` (64 B) at concurrency 64 over 16 connections (so the
 * kernel's SO_REUSEPORT spread gives each thread some), and the balancer
 * process's CPU per request (every thread's, from /proc/PID/stat).
 *
 * On a machine with two cores shared by the client, the servers and the
 * balancer, the 2-thread figure is bounded by that: it says whether a
 * second thread costs CPU per request and whether it adds throughput when
 * a core is free, not what 16 threads do on 16 cores.
 */
import { type DistProcess, startDist } from "../tests/helpers/dist.ts";
import {
  balancerArgs,
  type BenchFlags,
  clientBench,
  cpuUs,
  Rounds,
  startServers,
} from "./_common.ts";

const LOAD = ["--concurrency", "64", "--connections", "16", "--payload", "64"];

/** A balancer with `threads` threads, once every thread accepts. */
async function balancerWith(servers: DistProcess[], threads: number): Promise<DistProcess> {
  const p = await startDist([...balancerArgs(servers), "--threads", String(threads)]);
  const end = performance.now() + 10_000;
  while (threads > 1 && !p.stderr().includes(`Accepting on ${threads} threads`)) {
    if (performance.now() > end) throw new Error(`Threads did not start:\n${p.stderr()}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  return p;
}

export async function run(flags: BenchFlags): Promise<Record<string, number>> {
  const servers = await startServers();
  const sides: [string, DistProcess][] = [
    ["t1", await balancerWith(servers, 1)],
    ["t2", await balancerWith(servers, 2)],
  ];
  console.log(
    `${flags.runs} round(s) of ${flags.duration} per side; echo 64 B, c=64 over 16 connections; ` +
      `${navigator.hardwareConcurrency} cores on this machine`,
  );
  const rounds = new Rounds();
  try {
    // A short warm-up of each, so neither side's first round pays for compiling.
    for (const [, b] of sides) await clientBench(b.address, [...LOAD, "--duration", "1s"]);
    for (let round = 1; round <= flags.runs; round++) {
      for (let k = 0; k < sides.length; k++) {
        const [side, b] = sides[(round - 1 + k) % sides.length];
        const cpu0 = cpuUs(b.child.pid);
        const r = await clientBench(b.address, [...LOAD, "--duration", flags.duration]);
        rounds.add(`${side}_rps`, r.rps);
        rounds.add(`${side}_cpu_us_per_req`, (cpuUs(b.child.pid) - cpu0) / r.requests);
        const errors = Object.values((r.errors ?? {}) as Record<string, number>);
        rounds.add(`${side}_errors`, errors.reduce((a, b) => a + b, 0));
      }
      const last = rounds.rows;
      rounds.add("t2_vs_t1_rps", last.t2_rps.at(-1)! / last.t1_rps.at(-1)!);
      rounds.printRound("balancer-threads", round);
    }
  } finally {
    await Promise.all([...sides.map(([, b]) => b.stop()), ...servers.map((s) => s.stop())]);
  }
  const m = rounds.medians();
  console.log(
    `balancer-threads medians: 1 thread ${Math.round(m.t1_rps)} req/s, ` +
      `${m.t1_cpu_us_per_req.toFixed(1)} µs CPU/req; 2 threads ${Math.round(m.t2_rps)} req/s, ` +
      `${m.t2_cpu_us_per_req.toFixed(1)} µs CPU/req; 2 vs 1: ${m.t2_vs_t1_rps.toFixed(2)}×`,
  );
  return m;
}
