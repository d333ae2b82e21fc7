/**
 * The balancer suite: `dist balancer` over 3 `dist server`s, next to the
 * same client straight to one server and through HAProxy (mode tcp,
 * roundrobin, one thread) over the same 3 servers.
 *
 * 1. throughput of `echo` (64 B) at concurrency 64 over 4 connections:
 *    direct, HAProxy, balancer, in a rotating order each round (targets:
 *    balancer ≥ 1.0× HAProxy and ≥ 0.5× direct);
 * 2. added latency at a fixed rate of 10,000 req/s: p50 and p99 through the
 *    balancer minus straight to a server (target: p99 added ≤ 0.5 ms), and
 *    the balancer's RSS at the end of that run;
 * 3. failover cost: a 30,000-request bench through the balancer with one
 *    server SIGKILLed a fifth of the way in, next to the same run without
 *    the kill (p99, max, errors);
 * 4. the balancer's RSS with 10,000 idle client connections.
 *
 * Medians over the rounds; ratios are taken within each round.
 */
import { fileURLToPath } from "node:url";
import { dial, type Peer } from "../wire/mod.ts";
import { type DistProcess, freePort, startDist } from "../tests/helpers/dist.ts";
import {
  balancerArgs,
  type BenchFlags,
  clientBench,
  cpuUs,
  mib,
  onPath,
  Rounds,
  rssOf,
  startServers,
} from "./_common.ts";

const IDLE_CLIENT = fileURLToPath(new URL("./idle_client.ts", import.meta.url));
const THROUGHPUT = ["--concurrency", "64", "--connections", "4", "--payload", "64"];

interface Backend {
  served: number;
  state: string;
  peer: string;
  name: string;
}

async function backendsOf(peer: Peer): Promise<Backend[]> {
  return await peer.call("balancer.backends") as Backend[];
}

async function until(cond: () => Promise<boolean>, ms: number, what: string): Promise<void> {
  const end = performance.now() + ms;
  while (!(await cond())) {
    if (performance.now() > end) throw new Error(`Timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** HAProxy in the foreground over `servers`, on a free port of 127.0.0.1. */
export async function startHaproxy(servers: DistProcess[]) {
  const port = freePort();
  const dir = await Deno.makeTempDir({ prefix: "dist-bench-haproxy-" });
  const cfg = `${dir}/haproxy.cfg`;
  await Deno.writeTextFile(
    cfg,
    [
      "global",
      "    maxconn 4096",
      "    nbthread 1",
      "defaults",
      "    mode tcp",
      "    timeout connect 5s",
      "    timeout client 1m",
      "    timeout server 1m",
      "listen dist",
      `    bind 127.0.0.1:${port}`,
      "    balance roundrobin",
      ...servers.map((s, i) => `    server s${i + 1} ${s.address}`),
      "",
    ].join("\n"),
  );
  const child = new Deno.Command("haproxy", {
    args: ["-f", cfg, "-db"],
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  const address = `127.0.0.1:${port}`;
  await until(
    async () => {
      try {
        (await Deno.connect({ hostname: "127.0.0.1", port })).close();
        return true;
      } catch {
        return false;
      }
    },
    5000,
    "haproxy to listen",
  );
  return {
    address,
    pid: child.pid,
    async stop() {
      try {
        child.kill("SIGTERM");
      } catch {
        // Already gone.
      }
      await child.status;
      await Deno.remove(dir, { recursive: true });
    },
  };
}

/**
 * Untimed runs through every side before the first timed one, each ended
 * (its connections closed) before the next: a fresh balancer compiles its
 * hot path during its first run, and the first connections that close
 * deoptimize most of it (V8 learns then that fields such as a connection's
 * "closed" flag change), so the run after that compiles it again. Measured
 * per thread of a fresh balancer, c=64 over 4 connections: V8's helper
 * threads took 1.05 µs a request in the first timed run, 1.17 after one
 * untimed run, 0.13 after two. Every side gets the same (HAProxy and a
 * server need none, but their order stays fair).
 */
export async function warmUp(addresses: (string | undefined)[], times: number): Promise<void> {
  for (let i = 0; i < times; i++) {
    for (const address of addresses) {
      if (address !== undefined) await clientBench(address, [...THROUGHPUT, "--duration", "1s"]);
    }
  }
}

export async function run(flags: BenchFlags): Promise<Record<string, number>> {
  const failoverRequests = flags.quick ? 10_000 : 30_000;
  const idleConnections = flags.quick ? 1_000 : 10_000;
  const rateDuration = flags.quick ? "1s" : flags.duration;
  const servers = await startServers();
  // Room for the idle connections beside the watcher and the benches' own (the default is 10,000).
  const balancer = await startDist([
    ...balancerArgs(servers),
    "--max-connections",
    String(idleConnections + 1_000),
  ]);
  const haproxy = await onPath("haproxy") ? await startHaproxy(servers) : undefined;
  if (haproxy === undefined) console.log("skipped: haproxy not installed");
  const watcher = await dial(
    { host: "127.0.0.1", port: balancer.port },
    { role: "bench", name: "watcher" },
  );
  const allUp = () =>
    until(
      async () => (await backendsOf(watcher)).every((b) => b.state === "up"),
      10_000,
      "every backend up",
    );
  await allUp();
  console.log(
    `${flags.runs} round(s); throughput runs ${flags.duration}, echo 64 B, c=64 over 4 ` +
      `connections; rate runs 10,000 req/s for ${rateDuration}; failover runs ` +
      `${failoverRequests} requests`,
  );
  const rounds = new Rounds();
  // Each side: its address, and the proxy process whose CPU counts (none direct).
  const sides: [string, string | undefined, number | undefined][] = [
    ["direct", servers[0].address, undefined],
    ["haproxy", haproxy?.address, haproxy?.pid],
    ["balancer", balancer.address, balancer.child.pid],
  ];
  try {
    await warmUp(sides.map(([, address]) => address), flags.quick ? 1 : 2);
    for (let round = 1; round <= flags.runs; round++) {
      // 1. Throughput, in a rotating order.
      const rps: Record<string, number> = {};
      for (let k = 0; k < sides.length; k++) {
        const [side, address, proxy] = sides[(round - 1 + k) % sides.length];
        if (address === undefined) continue;
        const serversCpu = () => servers.reduce((t, s) => t + cpuUs(s.child.pid), 0);
        const [servers0, proxy0] = [serversCpu(), proxy ? cpuUs(proxy) : 0];
        const r = await clientBench(address, [...THROUGHPUT, "--duration", flags.duration]);
        rps[side] = r.rps;
        rounds.add(`${side}_rps`, r.rps);
        // CPU per request of the servers and of the proxy (the client's is the same for all).
        rounds.add(`${side}_servers_cpu_us_per_req`, (serversCpu() - servers0) / r.requests);
        if (proxy) rounds.add(`${side}_proxy_cpu_us_per_req`, (cpuUs(proxy) - proxy0) / r.requests);
      }
      if (rps.haproxy) rounds.add("balancer_vs_haproxy", rps.balancer / rps.haproxy);
      rounds.add("balancer_vs_direct", rps.balancer / rps.direct);

      // 2. Added latency at 10,000 req/s (alternating which goes first).
      const rate = ["--rate", "10000", "--duration", rateDuration, "--concurrency", "64"];
      const order = round % 2 ? ["direct", "balancer"] : ["balancer", "direct"];
      const lat: Record<string, { p50: number; p99: number }> = {};
      for (const side of order) {
        const r = await clientBench(
          side === "direct" ? servers[0].address : balancer.address,
          rate,
        );
        lat[side] = r.latency_ms;
        rounds.add(`${side}_rate_p50_ms`, r.latency_ms.p50);
        rounds.add(`${side}_rate_p99_ms`, r.latency_ms.p99);
        if (r.start_lag_ms) rounds.add(`${side}_rate_start_lag_p99_ms`, r.start_lag_ms.p99);
        if (side === "balancer") rounds.add("balancer_rss_after_rate", rssOf(balancer.child.pid));
      }
      rounds.add("added_p50_ms", lat.balancer.p50 - lat.direct.p50);
      rounds.add("added_p99_ms", lat.balancer.p99 - lat.direct.p99);

      // 3. Failover cost: the same run with and without a SIGKILL of s2.
      for (const kill of [false, true]) {
        const served0 = (await backendsOf(watcher)).reduce((n, b) => n + b.served, 0);
        let finished = false;
        const bench = clientBench(balancer.address, [
          "--concurrency",
          "64",
          "--connections",
          "4",
          "--requests",
          String(failoverRequests),
        ]).finally(() => finished = true);
        // Both runs poll the balancer the same way; only one kills.
        await until(
          async () =>
            finished ||
            (await backendsOf(watcher)).reduce((n, b) => n + b.served, 0) - served0 >=
              failoverRequests / 5,
          60_000,
          "a fifth of the run",
        );
        if (kill && !finished) await servers[1].stop("SIGKILL");
        const r = await bench;
        const tag = kill ? "kill" : "nokill";
        rounds.add(`failover_${tag}_p99_ms`, r.latency_ms.p99);
        rounds.add(`failover_${tag}_max_ms`, r.latency_ms.max);
        rounds.add(
          `failover_${tag}_errors`,
          Object.values(r.errors as Record<string, number>).reduce((a, b) => a + b, 0),
        );
        if (kill) {
          const port = servers[1].port;
          servers[1] = await startDist(["server", "--port", String(port), "--name", "s2"]);
          await allUp();
        }
      }
      rounds.printRound("balancer", round);
    }

    // 4. RSS with many idle client connections.
    const idle = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", IDLE_CLIENT, "dist", String(balancer.port), String(idleConnections)],
      stdin: "piped",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    const reader = idle.stdout.pipeThrough(new TextDecoderStream()).getReader();
    const { value } = await reader.read();
    await new Promise((r) => setTimeout(r, 1000));
    const idleRss = rssOf(balancer.child.pid);
    await idle.stdin.close();
    await reader.cancel().catch(() => {});
    const { code } = await idle.status;
    if (code !== 0 || value === undefined) {
      throw new Error(`The idle clients failed (exit ${code})`);
    }
    rounds.add("balancer_rss_idle", idleRss);
    console.log(`idle clients: ${value?.trim()}, balancer RSS ${mib(idleRss)}`);
  } finally {
    watcher.close();
    await haproxy?.stop();
    await balancer.stop();
    await Promise.all(servers.map((s) => s.stop()));
  }
  const m = rounds.medians();
  const f = (x: number | undefined, d = 0) => x === undefined ? "—" : x.toFixed(d);
  console.log(
    `throughput req/s: direct ${f(m.direct_rps)}, haproxy ${f(m.haproxy_rps)}, balancer ` +
      `${f(m.balancer_rps)}; balancer/haproxy ${f(m.balancer_vs_haproxy, 2)}× (target ≥ 1.0), ` +
      `balancer/direct ${f(m.balancer_vs_direct, 2)}× (target ≥ 0.5)`,
  );
  console.log(
    `CPU µs per request: servers direct ${f(m.direct_servers_cpu_us_per_req, 1)}, via haproxy ` +
      `${f(m.haproxy_servers_cpu_us_per_req, 1)} (+ haproxy ${
        f(m.haproxy_proxy_cpu_us_per_req, 1)
      }), ` +
      `via balancer ${f(m.balancer_servers_cpu_us_per_req, 1)} (+ balancer ` +
      `${f(m.balancer_proxy_cpu_us_per_req, 1)})`,
  );
  console.log(
    `at 10,000 req/s: direct p50 ${f(m.direct_rate_p50_ms, 3)} p99 ${
      f(m.direct_rate_p99_ms, 3)
    } ms; balancer p50 ${f(m.balancer_rate_p50_ms, 3)} p99 ${f(m.balancer_rate_p99_ms, 3)} ms; ` +
      `added p50 ${f(m.added_p50_ms, 3)} ms, p99 ${f(m.added_p99_ms, 3)} ms (target ≤ 0.5); ` +
      `balancer RSS ${mib(m.balancer_rss_after_rate)}`,
  );
  console.log(
    `failover (${failoverRequests} requests): without kill p99 ${f(m.failover_nokill_p99_ms, 3)} ` +
      `max ${f(m.failover_nokill_max_ms, 3)} ms; with s2 SIGKILLed p99 ${
        f(m.failover_kill_p99_ms, 3)
      } max ${f(m.failover_kill_max_ms, 3)} ms, errors ${f(m.failover_kill_errors)}`,
  );
  console.log(`balancer RSS with ${idleConnections} idle clients: ${mib(m.balancer_rss_idle)}`);
  return m;
}
