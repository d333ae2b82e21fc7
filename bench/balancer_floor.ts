/**
 * `deno task bench balancer-floor`: how far the balancer is from the floor
 * of this runtime, in one run over the same 3 `dist server`s.
 *
 * Rows, in a rotating order each round, echo 64 B over 4 connections:
 * - `relay_cN`: bench/relay_floor.ts, a Deno relay that only moves bytes
 *   (one read → one write per direction, one backend connection per client
 *   connection), at concurrency N = 16, 64 and 256 (4, 16, 64 requests per
 *   client read);
 * - `balancer_cN`: `dist balancer`, at 16, 64 and 256;
 * - `haproxy_cN`: HAProxy `mode tcp` (one thread), when installed, at 16, 64 and 256;
 * - `base_c64`, `base_c256`: with DIST_BASELINE=DIR, the balancer of that
 *   checkout (paired differences per round: `c64_cpu_minus_base_us` …).
 *
 * DIST_FLOOR_ROWS=name,name keeps only those rows.
 *
 * For each row: req/s, the proxy's CPU per request (schedstat of all its
 * threads), and, when `perf` can count syscall tracepoints (root), its
 * socket reads, writes and epoll waits per request. From the relay rows a
 * least-squares line CPU = a × syscalls + b splits the floor into a cost
 * per syscall (a: the op, its promise, the kernel's send and the wake-up of
 * the peer) and a cost per request (b: bytes). The balancer's figure minus
 * the relay's at the same concurrency is what its own code adds.
 */
import { fileURLToPath } from "node:url";
import type { DistProcess } from "../tests/helpers/dist.ts";
import { startDist } from "../tests/helpers/dist.ts";
import {
  balancerArgs,
  type BenchFlags,
  clientBench,
  cpuUs,
  onPath,
  Rounds,
  startServers,
} from "./_common.ts";
import { startHaproxy } from "./balancer.ts";
import { startBaseline } from "./balancer_hostile.ts";

const RELAY = fileURLToPath(new URL("./relay_floor.ts", import.meta.url));
const EVENTS = ["recvfrom", "read", "sendto", "write", "writev", "epoll_wait", "epoll_pwait"];

/** The floor relay over `backends`, on a free port of 127.0.0.1. */
async function startRelay(backends: string[]) {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", RELAY, backends.join(",")],
    stdin: "null",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const { value } = await reader.read();
  reader.releaseLock();
  child.stdout.cancel().catch(() => {});
  const port = Number(value?.trim());
  if (!(port > 0)) throw new Error(`relay_floor printed no port: ${value}`);
  return {
    address: `127.0.0.1:${port}`,
    pid: child.pid,
    async stop() {
      try {
        child.kill("SIGTERM");
      } catch {
        // Gone.
      }
      await child.status;
    },
  };
}

interface Syscalls {
  reads: number;
  writes: number;
  epolls: number;
}

/** Counts `pid`'s socket syscalls until stop() (undefined without perf). */
async function countSyscalls(pid: number) {
  const out = await Deno.makeTempFile({ prefix: "dist-bench-perf-" });
  const child = new Deno.Command("perf", {
    args: [
      "stat",
      "-x,",
      "-o",
      out,
      "-e",
      EVENTS.map((e) => `syscalls:sys_enter_${e}`).join(","),
      "-p",
      String(pid),
    ],
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  await new Promise((r) => setTimeout(r, 200));
  return async (): Promise<Syscalls | undefined> => {
    try {
      child.kill("SIGINT");
    } catch {
      // perf already exited (no permission).
    }
    const { success } = await child.status;
    const text = await Deno.readTextFile(out).catch(() => "");
    await Deno.remove(out).catch(() => {});
    const counts: Syscalls = { reads: 0, writes: 0, epolls: 0 };
    let seen = false;
    for (const line of text.split("\n")) {
      const [n, , event] = line.split(",");
      if (event === undefined || !/^\d+$/.test(n)) continue;
      seen = true;
      const name = event.replace(/.*sys_enter_/, "");
      if (name === "recvfrom" || name === "read") counts.reads += Number(n);
      else if (name.startsWith("epoll")) counts.epolls += Number(n);
      else counts.writes += Number(n);
    }
    return seen || success ? counts : undefined;
  };
}

/** Least squares y = a·x + b over the points. */
function line(points: [number, number][]): { a: number; b: number } {
  const n = points.length;
  const mx = points.reduce((s, [x]) => s + x, 0) / n;
  const my = points.reduce((s, [, y]) => s + y, 0) / n;
  const sxx = points.reduce((s, [x]) => s + (x - mx) ** 2, 0);
  const sxy = points.reduce((s, [x, y]) => s + (x - mx) * (y - my), 0);
  const a = sxx === 0 ? NaN : sxy / sxx;
  return { a, b: my - a * mx };
}

export async function run(flags: BenchFlags): Promise<Record<string, number>> {
  const servers = await startServers();
  const addresses = servers.map((s) => s.address);
  const balancer = await startDist(balancerArgs(servers));
  const base: DistProcess | undefined = await startBaseline(balancerArgs(servers));
  const relay = await startRelay(addresses);
  const haproxy = await onPath("haproxy") ? await startHaproxy(servers) : undefined;
  const perf = await onPath("perf");
  // Each row: name, address, the proxy's pid, concurrency (always over 4 connections).
  const rows: [string, string, number, number][] = [
    ["relay_c16", relay.address, relay.pid, 16],
    ["relay_c64", relay.address, relay.pid, 64],
    ["relay_c256", relay.address, relay.pid, 256],
    ["balancer_c16", balancer.address, balancer.child.pid, 16],
    ["balancer_c64", balancer.address, balancer.child.pid, 64],
    ["balancer_c256", balancer.address, balancer.child.pid, 256],
  ];
  if (haproxy) {
    rows.push(["haproxy_c16", haproxy.address, haproxy.pid, 16]);
    rows.push(["haproxy_c64", haproxy.address, haproxy.pid, 64]);
    rows.push(["haproxy_c256", haproxy.address, haproxy.pid, 256]);
  }
  if (base) {
    rows.push(["base_c64", base.address, base.child.pid, 64]);
    rows.push(["base_c256", base.address, base.child.pid, 256]);
  }
  // DIST_FLOOR_ROWS=a,b: only those rows (more rounds of an A/B in one hold of the lock).
  const only = Deno.env.get("DIST_FLOOR_ROWS")?.split(",");
  if (only !== undefined) rows.splice(0, rows.length, ...rows.filter((r) => only.includes(r[0])));
  console.log(
    `${flags.runs} round(s) of ${flags.duration}, echo 64 B over 4 connections; rows ` +
      rows.map((r) => r[0]).join(", ") + (perf ? "; syscalls by perf stat" : ""),
  );
  const rounds = new Rounds();
  try {
    // Warm every path twice (JIT, connections to the backends; the second
    // run recompiles what the first one's closing deoptimized: see warmUp in balancer.ts).
    for (let pass = 0; pass < 2; pass++) {
      for (const [, address, , c] of rows) {
        await clientBench(address, [
          "--concurrency",
          String(c),
          "--connections",
          "4",
          "--requests",
          "20000",
        ]);
      }
    }
    for (let round = 1; round <= flags.runs; round++) {
      for (let k = 0; k < rows.length; k++) {
        const [name, address, pid, c] = rows[(round - 1 + k) % rows.length];
        const serversCpu = () => servers.reduce((t, s) => t + cpuUs(s.child.pid), 0);
        const stop = perf ? await countSyscalls(pid) : undefined;
        const [cpu0, servers0] = [cpuUs(pid), serversCpu()];
        const r = await clientBench(address, [
          "--concurrency",
          String(c),
          "--connections",
          "4",
          "--payload",
          "64",
          "--duration",
          flags.duration,
        ]);
        const [cpu1, servers1] = [cpuUs(pid), serversCpu()];
        const calls = await stop?.();
        rounds.add(`${name}_rps`, r.rps);
        rounds.add(`${name}_cpu_us`, (cpu1 - cpu0) / r.requests);
        rounds.add(`${name}_servers_cpu_us`, (servers1 - servers0) / r.requests);
        if (calls) {
          rounds.add(`${name}_reads_per_req`, calls.reads / r.requests);
          rounds.add(`${name}_writes_per_req`, calls.writes / r.requests);
          rounds.add(`${name}_epolls_per_req`, calls.epolls / r.requests);
        }
      }
      const last = (k: string) => rounds.rows[k]?.at(-1) ?? NaN;
      rounds.add("above_floor_c64_us", last("balancer_c64_cpu_us") - last("relay_c64_cpu_us"));
      rounds.add("above_floor_c256_us", last("balancer_c256_cpu_us") - last("relay_c256_cpu_us"));
      if (haproxy) {
        rounds.add("balancer_vs_haproxy", last("balancer_c64_rps") / last("haproxy_c64_rps"));
        rounds.add("relay_vs_haproxy", last("relay_c64_rps") / last("haproxy_c64_rps"));
        rounds.add(
          "balancer_vs_haproxy_c256",
          last("balancer_c256_rps") / last("haproxy_c256_rps"),
        );
      }
      if (base) {
        rounds.add("balancer_vs_base", last("balancer_c64_rps") / last("base_c64_rps"));
        rounds.add("c64_cpu_minus_base_us", last("balancer_c64_cpu_us") - last("base_c64_cpu_us"));
        rounds.add("balancer_vs_base_c256", last("balancer_c256_rps") / last("base_c256_rps"));
        rounds.add(
          "c256_cpu_minus_base_us",
          last("balancer_c256_cpu_us") - last("base_c256_cpu_us"),
        );
      }
      rounds.printRound("balancer-floor", round);
    }
  } finally {
    await haproxy?.stop();
    await relay.stop();
    await base?.stop();
    await balancer.stop();
    await Promise.all(servers.map((s) => s.stop()));
  }
  const m = rounds.medians();
  const f = (x: number | undefined, d = 2) => x === undefined || isNaN(x) ? "—" : x.toFixed(d);
  for (const [name] of rows) {
    console.log(
      `${name.padEnd(14)} ${f(m[`${name}_rps`], 0).padStart(7)} req/s, own CPU ` +
        `${f(m[`${name}_cpu_us`])} µs/req (servers ${f(m[`${name}_servers_cpu_us`])}); per ` +
        `request: reads ${f(m[`${name}_reads_per_req`], 3)}, writes ` +
        `${f(m[`${name}_writes_per_req`], 3)}, epoll waits ${f(m[`${name}_epolls_per_req`], 3)}`,
    );
  }
  // The relay's cost split: per socket syscall (read or write) and per request.
  const points = ["relay_c16", "relay_c64", "relay_c256"]
    .filter((n) => m[`${n}_reads_per_req`] !== undefined)
    .map((n) =>
      [m[`${n}_reads_per_req`] + m[`${n}_writes_per_req`], m[`${n}_cpu_us`]] as [number, number]
    );
  if (points.length >= 2) {
    const { a, b } = line(points);
    m.floor_us_per_syscall = a;
    m.floor_us_per_request = b;
    console.log(
      `relay floor: ${f(a)} µs per socket read or write (with its epoll share) + ` +
        `${f(b)} µs per request`,
    );
  }
  console.log(
    `balancer above the relay: c=64 ${f(m.above_floor_c64_us)} µs/req, c=256 ` +
      `${f(m.above_floor_c256_us)} µs/req; balancer/haproxy ${f(m.balancer_vs_haproxy)}× ` +
      `(c=256 ${f(m.balancer_vs_haproxy_c256)}×), ` +
      `relay/haproxy ${f(m.relay_vs_haproxy)}×` +
      (base
        ? `; balancer/base c=64 ${f(m.balancer_vs_base)}×, CPU ${f(m.c64_cpu_minus_base_us)} ` +
          `µs/req (paired), c=256 ${f(m.balancer_vs_base_c256)}×, ` +
          `CPU ${f(m.c256_cpu_minus_base_us)} µs/req`
        : ""),
  );
  return m;
}
