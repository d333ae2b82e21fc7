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
 * a core is free, not what 16 threads do on 16 cores. So each run also
 * says how busy the machine was (all cores, from /proc/stat: 100 % is every
 * core busy, whoever used it) and what the servers and the rest (the client
 * and other processes) used, in cores.
 */
import { distCommand, type DistProcess, startDist } from "../tests/helpers/dist.ts";
import {
  balancerArgs,
  type BenchFlags,
  clientBench,
  cpuUs,
  Rounds,
  startServers,
} from "./_common.ts";

const LOAD = ["--concurrency", "64", "--connections", "16", "--payload", "64"];

/**
 * `dist client --bench` as clientBench runs it, with the client's own CPU
 * (µs, sampled every 100 ms while it runs: the last 100 ms may be missed).
 */
async function clientRun(address: string, args: string[]) {
  const { exe, args: argv } = distCommand([
    "client",
    "--connect",
    address,
    "--bench",
    "--json",
    "--log-level",
    "warning",
    ...args,
  ]);
  const child = new Deno.Command(exe, { args: argv, stdout: "piped", stderr: "piped" }).spawn();
  // A process just spawned has used next to nothing; a read of a gone one is not a number.
  let cpu = 0;
  const sampler = setInterval(() => cpu = Math.max(cpu, cpuUs(child.pid) || 0), 100);
  try {
    const out = await child.output();
    if (!out.success) {
      throw new Error(`client bench failed: ${new TextDecoder().decode(out.stderr)}`);
    }
    const last = new TextDecoder().decode(out.stdout).trim().split("\n").at(-1)!;
    return { ...JSON.parse(last), clientCpuUs: cpu };
  } finally {
    clearInterval(sampler);
  }
}

/** Busy and total jiffies of all cores (/proc/stat's first line). */
function machineJiffies(): { busy: number; total: number } {
  const f = Deno.readTextFileSync("/proc/stat").split("\n")[0].trim().split(/\s+/).slice(1)
    .map(Number);
  const total = f.reduce((a, b) => a + b, 0);
  // idle and iowait
  return { busy: total - f[3] - f[4], total };
}

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
    // Two short warm-ups of each, so neither side's first round pays for compiling (nor the
    // second for compiling again what the first one's closing deoptimized: warmUp, balancer.ts).
    for (let pass = 0; pass < 2; pass++) {
      for (const [, b] of sides) await clientBench(b.address, [...LOAD, "--duration", "1s"]);
    }
    for (let round = 1; round <= flags.runs; round++) {
      for (let k = 0; k < sides.length; k++) {
        const [side, b] = sides[(round - 1 + k) % sides.length];
        const serversCpu = () => servers.reduce((t, s) => t + cpuUs(s.child.pid), 0);
        const [cpu0, servers0, machine0, t0] = [
          cpuUs(b.child.pid),
          serversCpu(),
          machineJiffies(),
          performance.now(),
        ];
        const r = await clientRun(b.address, [...LOAD, "--duration", flags.duration]);
        const us = (performance.now() - t0) * 1000;
        const machine1 = machineJiffies();
        const cores = navigator.hardwareConcurrency;
        const balancerCores = (cpuUs(b.child.pid) - cpu0) / us;
        const serversCores = (serversCpu() - servers0) / us;
        const machineCores = (machine1.busy - machine0.busy) / (machine1.total - machine0.total) *
          cores;
        rounds.add(`${side}_rps`, r.rps);
        rounds.add(`${side}_cpu_us_per_req`, balancerCores * us / r.requests);
        rounds.add(`${side}_machine_busy_pct`, machineCores / cores * 100);
        rounds.add(`${side}_balancer_cores`, balancerCores);
        rounds.add(`${side}_servers_cores`, serversCores);
        rounds.add(`${side}_client_cores`, r.clientCpuUs / us);
        rounds.add(`${side}_rest_cores`, machineCores - balancerCores - serversCores);
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
  for (const side of ["t1", "t2"]) {
    console.log(
      `${side}: machine ${m[`${side}_machine_busy_pct`].toFixed(0)} % busy; cores used: ` +
        `balancer ${m[`${side}_balancer_cores`].toFixed(2)}, servers ` +
        `${m[`${side}_servers_cores`].toFixed(2)}, client ${m[`${side}_client_cores`].toFixed(2)}` +
        ` (of the rest, ${m[`${side}_rest_cores`].toFixed(2)}: client, other processes)`,
    );
  }
  return m;
}
