/**
 * What `--metrics` costs on the hot paths, each process against its twin
 * without it. Every round measures each load on both, in off-on-on-off
 * order (on-off-off-on every other round) so a drift of the machine's load
 * weighs on both sides alike; a round's ratio is on/off of the summed pair,
 * and the medians of rounds are reported, for throughput and for the CPU
 * the process itself spent per request or delivery (its threads' scheduler
 * time: a busy machine blurs it far less than a rate). Loads:
 *
 * - `rpc`: `dist client --bench` echo at c=64 against a server (the RPC
 *   bench as users run it);
 * - `rpc_burst`: bursts of 64 echo requests in lockstep (burst_client.ts)
 *   against the same server: the same batches every run, so the CPU per
 *   request is steady enough to show a few percent;
 * - `balancer`, `balancer_burst`: the same two through a balancer (its
 *   forward-time histogram), over one server without metrics;
 * - `broker_1to4`: a broker's 1 publisher → 4 subscribers deliveries/s.
 *
 * Then, in process: one call bare and counted as a Peer counts it, and
 * one timed observation (two clock reads and a bucket); and the scrape of a
 * broker holding 100,000 retained topics (the issue's target: ≤ 50 ms and
 * ≤ 1 MiB).
 */
import { startDist } from "../tests/helpers/dist.ts";
import { BrokerClient } from "../tests/helpers/broker.ts";
import { type BenchFlags, clientBench, cpuUs, Rounds } from "./_common.ts";
import type { DistProcess } from "../tests/helpers/dist.ts";
import { loadRun } from "./broker.ts";
import { forwardLatency, Registry, RpcMetrics } from "../obs/mod.ts";
import type { Peer, RequestCounter, RequestHandler, RequestTally } from "../wire/mod.ts";

const M = ["--metrics", "127.0.0.1:0"];
const BURST_CLIENT = new URL("./burst_client.ts", import.meta.url).pathname;
/** Requests in flight at once: `dist client --bench --concurrency 64`'s shape. */
const BURST = 64;

/** Runs `bursts` lockstep bursts of {@link BURST} echo requests against `port`; its req/s. */
async function burstRun(port: number, bursts: number): Promise<number> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", BURST_CLIENT, String(port), String(BURST), String(bursts)],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout).trim();
  if (!out.success) {
    throw new Error(`burst client failed: ${new TextDecoder().decode(out.stderr)}${text}`);
  }
  return JSON.parse(text.split("\n").at(-1)!).rps;
}
const METRICS_LINE = /Metrics at (\S+)/;

/** ns per call of `h`, over `n` calls. */
function nsPerCall(h: RequestHandler, n: number): number {
  const peer = {} as Peer;
  const methods = ["echo", "add"].map((m) => m.split("").join("")); // not interned, as decoded
  const t0 = performance.now();
  for (let i = 0; i < n; i++) h(methods[(i >> 10) & 1], i, peer, { idempotent: true });
  return (performance.now() - t0) * 1e6 / n;
}

/**
 * `handler` counted as a Peer counts what it answers (wire/peer.ts: the
 * last method's tally kept, start, done).
 */
function counted(handler: RequestHandler, counter: RequestCounter): RequestHandler {
  let lastMethod = "";
  let tally: RequestTally | undefined;
  return (method, params, peer, meta) => {
    if (method !== lastMethod) {
      tally = counter.of(method);
      lastMethod = method;
    }
    const t0 = tally!.start();
    const r = handler(method, params, peer, meta);
    tally!.done(t0);
    return r;
  };
}

/** ns per call of a handler, bare and counted as the Peer counts it, alternating. */
function inProcess(rounds: Rounds): void {
  const handler: RequestHandler = (_m, params) => params;
  const wrapped = counted(handler, new RpcMetrics(new Registry()).counter(false));
  const n = 1_000_000;
  const bare: number[] = [];
  const on: number[] = [];
  for (let i = 0; i < 3; i++) {
    bare.push(nsPerCall(handler, n));
    on.push(nsPerCall(wrapped, n));
  }
  rounds.add("call_bare_ns", Math.min(...bare));
  rounds.add("call_counted_ns", Math.min(...on));
  const cell = forwardLatency(new Registry());
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    const start = performance.now();
    cell.observe((performance.now() - start) / 1000);
  }
  rounds.add("timed_observe_ns", (performance.now() - t0) * 1e6 / n);
}

/** Measures `off` and `on` twice each, in ABBA order, adding both sides and their ratio. */
async function pair(
  rounds: Rounds,
  key: string,
  round: number,
  measure: (on: boolean) => Promise<number>,
): Promise<void> {
  const order = round % 2 ? [false, true, true, false] : [true, false, false, true];
  const sum = { off: 0, on: 0 };
  for (const on of order) sum[on ? "on" : "off"] += await measure(on);
  rounds.add(`${key}_off`, sum.off / 2);
  rounds.add(`${key}_on`, sum.on / 2);
  rounds.add(`${key}_ratio`, sum.on / sum.off);
}

/**
 * `pair` for a load on a process of ours: besides the rate (`<key>_s`),
 * the CPU that process spent per unit of work (`<key>_cpu_ns`), which a
 * busy machine blurs far less than a rate.
 */
async function pairWithCpu(
  rounds: Rounds,
  key: string,
  round: number,
  side: (on: boolean) => { pid: number; units: number; run: () => Promise<number> },
): Promise<void> {
  const cpu = { off: 0, on: 0 };
  await pair(rounds, `${key}_s`, round, async (m) => {
    const { pid, units, run } = side(m);
    const c0 = cpuUs(pid) * 1000;
    const value = await run();
    cpu[m ? "on" : "off"] += (cpuUs(pid) * 1000 - c0) / units;
    return value;
  });
  rounds.add(`${key}_cpu_ns_off`, cpu.off / 2);
  rounds.add(`${key}_cpu_ns_on`, cpu.on / 2);
  rounds.add(`${key}_cpu_ns_ratio`, cpu.on / cpu.off);
}

/** A broker with `--metrics` holding `n` retained topics; its metrics URL. */
async function brokerWithTopics(n: number) {
  const broker = await startDist(["broker", "--port", "0", ...M]);
  const pub = await BrokerClient.connect(broker.port);
  try {
    for (let i = 0; i < n; i++) {
      pub.publish(`/scrape/${i % 100}/t${i}`, i, true);
      if (i % 5000 === 4999) await pub.confirm("/scrape/sync", i); // paced by the broker
    }
    await pub.confirm("/scrape/sync", n);
  } finally {
    pub.close();
  }
  const url = broker.stderr().match(METRICS_LINE)![1];
  const text = await (await fetch(url)).text();
  const topics = Number(text.match(/^dist_broker_retained_topics (\d+)$/m)?.[1]);
  if (topics < n) throw new Error(`The broker holds ${topics} retained topics, not ${n}`);
  return { broker, url };
}

/** A listener's port (from its address). */
const portOf = (p: DistProcess) => Number(p.address.slice(p.address.lastIndexOf(":") + 1));

export async function run(flags: BenchFlags): Promise<Record<string, number>> {
  const off = await startDist(["server", "--port", "0"]);
  const on = await startDist(["server", "--port", "0", ...M]);
  const backend = await startDist(["server", "--port", "0"]);
  const brokerOff = await startDist(["broker", "--port", "0"]);
  const brokerOn = await startDist(["broker", "--port", "0", ...M]);
  const W = ["--worker-port", "0", "--backends", backend.address];
  const balancerOff = await startDist(["balancer", "--port", "0", ...W]);
  const balancerOn = await startDist(["balancer", "--port", "0", ...W, ...M]);
  const topics = flags.quick ? 10_000 : 100_000;
  const big = await brokerWithTopics(topics);
  const rounds = new Rounds();
  const requests = flags.quick ? "10000" : "50000";
  const bursts = flags.quick ? 200 : 1500;
  const n4 = flags.quick ? 25_000 : 100_000;
  const rps = async (address: string) =>
    (await clientBench(address, ["--requests", requests, "--concurrency", "64"])).rps as number;
  const rpcSide = (a: DistProcess, b: DistProcess, burst: boolean) => (m: boolean) => {
    const p = m ? b : a;
    return burst
      ? { pid: p.child.pid, units: BURST * bursts, run: () => burstRun(portOf(p), bursts) }
      : { pid: p.child.pid, units: Number(requests), run: () => rps(p.address) };
  };
  try {
    // Warm-up: each process's code compiled before anything is measured.
    for (const p of [off, on, balancerOff, balancerOn]) {
      await burstRun(portOf(p), bursts);
      await rps(p.address);
    }
    for (const b of [brokerOff, brokerOn]) {
      await loadRun("dist", { port: b.port, pid: b.child.pid }, 4, n4);
    }
    for (let r = 1; r <= flags.runs; r++) {
      await pairWithCpu(rounds, "rpc", r, rpcSide(off, on, false));
      await pairWithCpu(rounds, "rpc_burst", r, rpcSide(off, on, true));
      await pairWithCpu(rounds, "balancer", r, rpcSide(balancerOff, balancerOn, false));
      await pairWithCpu(rounds, "balancer_burst", r, rpcSide(balancerOff, balancerOn, true));
      await pairWithCpu(rounds, "broker_1to4", r, (m) => {
        const b = m ? brokerOn : brokerOff;
        const load = { port: b.port, pid: b.child.pid };
        return {
          pid: b.child.pid,
          units: 4 * n4,
          run: async () => (await loadRun("dist", load, 4, n4)).deliveriesPerS,
        };
      });
      inProcess(rounds);
      for (let i = 0; i < 3; i++) {
        const t0 = performance.now();
        const text = await (await fetch(big.url)).text();
        rounds.add("scrape_topics_ms", performance.now() - t0);
        rounds.add("scrape_topics_bytes", new TextEncoder().encode(text).length);
      }
      rounds.printRound("metrics", r);
    }
  } finally {
    await Promise.all(
      [off, on, backend, brokerOff, brokerOn, balancerOff, balancerOn, big.broker].map((p) =>
        p.stop()
      ),
    );
  }
  const m = rounds.medians();
  const f = (x: number) => x.toFixed(0);
  const line = (key: string, what: string, unit: string) =>
    `  ${what}: ${unit} off ${f(m[`${key}_s_off`])}, on ${f(m[`${key}_s_on`])}, median ratio ${
      m[`${key}_s_ratio`].toFixed(3)
    }×; CPU ns per ${unit.split("/")[0]} off ${f(m[`${key}_cpu_ns_off`])}, on ${
      f(m[`${key}_cpu_ns_on`])
    }, median ratio ${m[`${key}_cpu_ns_ratio`].toFixed(3)}×`;
  console.log(
    [
      `metrics medians of ${flags.runs} rounds (on/off ratios per round, CPU of the process measured):`,
      line("rpc", "server, dist client --bench c=64", "req/s"),
      line("rpc_burst", "server, lockstep bursts of 64", "req/s"),
      line("balancer", "balancer, dist client --bench c=64", "req/s"),
      line("balancer_burst", "balancer, lockstep bursts of 64", "req/s"),
      line("broker_1to4", "broker, 1 publisher → 4 subscribers", "deliveries/s"),
      `  in process: a call bare ${f(m.call_bare_ns)} ns, counted ${f(m.call_counted_ns)} ns; ` +
      `a timed observation ${f(m.timed_observe_ns)} ns`,
      `  scrape of a broker with ${topics} topics: ${m.scrape_topics_ms.toFixed(1)} ms, ` +
      `${m.scrape_topics_bytes} bytes`,
    ].join("\n"),
  );
  return m;
}
