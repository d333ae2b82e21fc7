/**
 * What `--metrics` costs on the hot paths: RPC echo at c=64 (`dist client
 * --bench`) against a server without and with `--metrics`, and a broker's
 * 1 publisher → 4 subscribers deliveries/s without and with it, the two
 * sides alternating which goes first each round, medians; the scrape of a
 * broker holding many topics (time and size), and one request's added work
 * in-process (the shell's wrap around a handler). Also RPC c=64 through a
 * balancer without and with `--metrics` (its forward-time histogram), and
 * in-process the cost of one timed observation (two clock reads and a
 * histogram bucket: the balancer's, the broker's per publish).
 */
import { startDist } from "../tests/helpers/dist.ts";
import { type BenchFlags, clientBench, Rounds } from "./_common.ts";
import { loadRun } from "./broker.ts";
import { forwardLatency, Registry, RpcMetrics } from "../obs/mod.ts";
import type { Peer, RequestHandler } from "../wire/mod.ts";

const M = ["--metrics", "127.0.0.1:0"];

/** ns per call of a handler, bare and wrapped by the shell's metrics. */
function inProcess(rounds: Rounds): void {
  const handler: RequestHandler = (_m, params) => params;
  const rpc = new RpcMetrics(new Registry());
  const wrapped = rpc.wrap(handler, false);
  const n = 2_000_000;
  const peer = {} as Peer;
  for (const [key, h] of [["bare", handler], ["wrapped", wrapped]] as const) {
    const t0 = performance.now();
    for (let i = 0; i < n; i++) h("echo", i, peer, { id: i } as never);
    rounds.add(`call_${key}_ns`, (performance.now() - t0) * 1e6 / n);
  }
  const cell = forwardLatency(new Registry());
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    const start = performance.now();
    cell.observe((performance.now() - start) / 1000);
  }
  rounds.add("timed_observe_ns", (performance.now() - t0) * 1e6 / n);
}

export async function run(flags: BenchFlags): Promise<Record<string, number>> {
  const off = await startDist(["server", "--port", "0"]);
  const on = await startDist(["server", "--port", "0", ...M]);
  const brokerOff = await startDist(["broker", "--port", "0"]);
  const brokerOn = await startDist(["broker", "--port", "0", ...M]);
  const url = brokerOn.stderr().match(/Metrics at (\S+)/)?.[1];
  const W = ["--worker-port", "0"];
  const balancerOff = await startDist(["balancer", "--port", "0", ...W, "--backends", off.address]);
  const balancerOn = await startDist([
    "balancer",
    "--port",
    "0",
    ...W,
    "--backends",
    off.address,
    ...M,
  ]);
  const rounds = new Rounds();
  const requests = flags.quick ? "20000" : "100000";
  const n4 = flags.quick ? 50_000 : 200_000;
  try {
    for (let r = 1; r <= flags.runs; r++) {
      const rpc: [string, string][] = [["rpc_off", off.address], ["rpc_on", on.address]];
      for (const [key, address] of r % 2 ? rpc : [...rpc].reverse()) {
        const out = await clientBench(address, ["--requests", requests, "--concurrency", "64"]);
        rounds.add(`${key}_req_s`, out.rps);
      }
      const bal: [string, string][] = [
        ["balancer_off", balancerOff.address],
        ["balancer_on", balancerOn.address],
      ];
      for (const [key, address] of r % 2 ? bal : [...bal].reverse()) {
        const out = await clientBench(address, ["--requests", requests, "--concurrency", "64"]);
        rounds.add(`${key}_req_s`, out.rps);
      }
      const brokers: [string, typeof brokerOff][] = [["broker_off", brokerOff], [
        "broker_on",
        brokerOn,
      ]];
      for (const [key, b] of r % 2 ? brokers : [...brokers].reverse()) {
        const res = await loadRun("dist", { port: b.port, pid: b.child.pid }, 4, n4);
        rounds.add(`${key}_1to4_deliveries_per_s`, res.deliveriesPerS);
      }
      inProcess(rounds);
      if (url !== undefined) {
        const t0 = performance.now();
        const text = await (await fetch(url)).text();
        rounds.add("scrape_ms", performance.now() - t0);
        rounds.add("scrape_bytes", text.length);
      }
      rounds.printRound("metrics", r);
    }
  } finally {
    await Promise.all(
      [off, on, brokerOff, brokerOn, balancerOff, balancerOn].map((p) => p.stop()),
    );
  }
  const m = rounds.medians();
  console.log(
    `metrics medians: RPC c=64 req/s off ${m.rpc_off_req_s.toFixed(0)}, on ${
      m.rpc_on_req_s.toFixed(0)
    } (${(m.rpc_on_req_s / m.rpc_off_req_s).toFixed(3)}×); broker 1→4 deliveries/s off ${
      m.broker_off_1to4_deliveries_per_s.toFixed(0)
    }, on ${m.broker_on_1to4_deliveries_per_s.toFixed(0)} (${
      (m.broker_on_1to4_deliveries_per_s / m.broker_off_1to4_deliveries_per_s).toFixed(3)
    }×); a call bare ${m.call_bare_ns.toFixed(0)} ns, wrapped ${
      m.call_wrapped_ns.toFixed(0)
    } ns; scrape of a broker ${m.scrape_ms?.toFixed(1)} ms, ${m.scrape_bytes} bytes; ` +
      `through a balancer req/s off ${m.balancer_off_req_s.toFixed(0)}, on ${
        m.balancer_on_req_s.toFixed(0)
      } (${(m.balancer_on_req_s / m.balancer_off_req_s).toFixed(3)}×); a timed observation ${
        m.timed_observe_ns.toFixed(0)
      } ns`,
  );
  return m;
}
