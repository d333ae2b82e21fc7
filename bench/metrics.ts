/**
 * What `--metrics` costs on the hot paths, each process against its twin
 * without it, in two ways:
 *
 * - interleaved (`*_il`): one client process (burst_client.ts) takes turns
 *   between the two, burst by burst (A B A B …, who goes first changing
 *   every burst): 64 echo requests to a server, or through a balancer, or
 *   64 publishes to a broker delivered to 4 subscribers each. Both sides
 *   live through the same moments of a busy machine, so the CPU each
 *   process spent per request or delivery (its threads' scheduler time)
 *   is compared within one run; each round one such run.
 * - one after the other, as users run the benches: `dist client --bench`
 *   echo at c=64 against a server and through a balancer, and a broker's
 *   1 publisher → 4 subscribers (bench/broker.ts), in off-on-on-off order
 *   (on-off-off-on every other round); a round's ratio is on/off of the
 *   summed pair. On a shared 2-core machine these swing by 20 % a round.
 *
 * Medians of rounds are reported. Then, in process: one call bare and
 * counted as a Peer counts it, and one timed observation (two clock reads
 * and a bucket); and the scrape of a broker holding 100,000 retained topics
 * (the issue's target: ≤ 50 ms and ≤ 1 MiB).
 */
import { startDist } from "../tests/helpers/dist.ts";
import { BrokerClient } from "../tests/helpers/broker.ts";
import { type BenchFlags, clientBench, cpuUs, Rounds } from "./_common.ts";
import type { DistProcess } from "../tests/helpers/dist.ts";
import { loadRun } from "./broker.ts";
import { forwardLatency, Registry, RpcMetrics } from "../obs/mod.ts";
import type { Peer, RequestCounter, RequestHandler, RequestTally } from "../wire/mod.ts";

const M = ["--metrics", "127.0.0.1:0"];
/** Interleaved runs of each load per round. */
const IL_PER_ROUND = 3;
const BURST_CLIENT = new URL("./burst_client.ts", import.meta.url).pathname;
/** Requests (or publishes) per burst: `dist client --bench --concurrency 64`'s shape. */
const BURST = "64";

/** One burst_client.ts run; per listener (in the order given) its units and rate. */
async function burstClient(args: string[]): Promise<{ units: number; rate: number }[]> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", BURST_CLIENT, ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout).trim();
  if (!out.success) {
    throw new Error(`burst client failed: ${new TextDecoder().decode(out.stderr)}${text}`);
  }
  return JSON.parse(text.split("\n").at(-1)!);
}

/**
 * One interleaved run over `off` and `on` (see the module comment): the
 * rate each got and the CPU each spent per unit, and their on/off ratios.
 */
async function interleaved(
  rounds: Rounds,
  key: string,
  round: number,
  sides: { off: DistProcess; on: DistProcess; args: (ports: string) => string[] },
): Promise<void> {
  const both = round % 2 ? [sides.off, sides.on] : [sides.on, sides.off];
  const c0 = both.map((p) => cpuUs(p.child.pid));
  const out = await burstClient(sides.args(both.map(portOf).join(",")));
  const cpu = both.map((p, i) => (cpuUs(p.child.pid) - c0[i]) * 1000 / out[i].units);
  const [on, off] = both[0] === sides.on ? [0, 1] : [1, 0];
  rounds.add(`${key}_s_off`, out[off].rate);
  rounds.add(`${key}_s_on`, out[on].rate);
  rounds.add(`${key}_s_ratio`, out[on].rate / out[off].rate);
  rounds.add(`${key}_cpu_ns_off`, cpu[off]);
  rounds.add(`${key}_cpu_ns_on`, cpu[on]);
  rounds.add(`${key}_cpu_ns_ratio`, cpu[on] / cpu[off]);
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
const portOf = (p: DistProcess) => p.address.slice(p.address.lastIndexOf(":") + 1);

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
  const n4 = flags.quick ? 25_000 : 50_000;
  const rps = async (address: string) =>
    (await clientBench(address, ["--requests", requests, "--concurrency", "64"])).rps as number;
  const rpcSide = (a: DistProcess, b: DistProcess) => (m: boolean) => {
    const p = m ? b : a;
    return { pid: p.child.pid, units: Number(requests), run: () => rps(p.address) };
  };
  const bursts = flags.quick ? "200" : "1500";
  const rpcIl = (ports: string) => ["rpc", ports, BURST, bursts];
  const brokerIl = (ports: string) => ["broker", ports, BURST, flags.quick ? "100" : "400", "4"];
  try {
    // Warm-up: each process's code compiled before anything is measured.
    await burstClient(rpcIl([off, on].map(portOf).join(",")));
    await burstClient(rpcIl([balancerOff, balancerOn].map(portOf).join(",")));
    await burstClient(brokerIl([brokerOff, brokerOn].map(portOf).join(",")));
    for (const p of [off, on, balancerOff, balancerOn]) await rps(p.address);
    for (let r = 1; r <= flags.runs; r++) {
      // Interleaved runs are short and tell the most: three of each a round.
      for (let i = 0; i < IL_PER_ROUND; i++) {
        const k = 2 * r + i; // who is listed first alternates
        await interleaved(rounds, "rpc_il", k, { off, on, args: rpcIl });
        const balancers = { off: balancerOff, on: balancerOn, args: rpcIl };
        await interleaved(rounds, "balancer_il", k, balancers);
        await interleaved(rounds, "broker_il", k, { off: brokerOff, on: brokerOn, args: brokerIl });
      }
      await pairWithCpu(rounds, "rpc", r, rpcSide(off, on));
      await pairWithCpu(rounds, "balancer", r, rpcSide(balancerOff, balancerOn));
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
      `metrics medians of ${flags.runs} rounds (${IL_PER_ROUND * flags.runs} interleaved runs; ` +
      "on/off ratios per run or round; CPU: the measured process's own, per request or delivery):",
      line("rpc_il", "server, interleaved bursts of 64", "req/s"),
      line("balancer_il", "balancer, interleaved bursts of 64", "req/s"),
      line("broker_il", "broker, interleaved bursts of 64 → 4 subscribers", "deliveries/s"),
      line("rpc", "server, dist client --bench c=64, one after the other", "req/s"),
      line("balancer", "balancer, dist client --bench c=64, one after the other", "req/s"),
      line(
        "broker_1to4",
        "broker, 1 → 4 subscribers (bench broker), one after the other",
        "deliveries/s",
      ),
      `  in process: a call bare ${f(m.call_bare_ns)} ns, counted ${f(m.call_counted_ns)} ns; ` +
      `a timed observation ${f(m.timed_observe_ns)} ns`,
      `  scrape of a broker with ${topics} topics: ${m.scrape_topics_ms.toFixed(1)} ms, ` +
      `${m.scrape_topics_bytes} bytes`,
    ].join("\n"),
  );
  return m;
}
