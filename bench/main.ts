/**
 * `deno task bench [SUITE...] [--quick] [--runs N] [--duration 5s]`
 *
 * Runs the benchmark suites named (all by default), one after another, and
 * prints each suite's rounds and medians, then one JSON line with every
 * median. These machines are shared and noisy: each suite measures the two
 * sides it compares back to back in every round, and quotes medians.
 *
 * Suites: one file each in bench/, registered in SUITES below.
 */
import { parseArgs } from "node:util";
import type { BenchFlags, Suite } from "./_common.ts";

const SUITES: Record<string, { about: string; load: () => Promise<Suite> }> = {
  wire: {
    about: "raw TCP floor vs RPC echo, c=1 latency and c=64 throughput, JSON and MessagePack",
    load: async () => (await import("./wire.ts")).run,
  },
  balancer: {
    about: "balancer vs HAProxy vs direct: c=64 throughput, added latency at 10k req/s, " +
      "failover, RSS; then balancer-threads and balancer-l4",
    // The RPC mode's figures, then 1 vs 2 threads (medians prefixed threads_) and the L4
    // mode's comparison (prefixed l4_).
    load: async () => {
      const rpc = (await import("./balancer.ts")).run;
      const threads = (await import("./balancer_threads.ts")).run;
      const l4 = (await import("./balancer_l4.ts")).run;
      return async (flags: BenchFlags) => {
        const medians = await rpc(flags);
        for (const [k, v] of Object.entries(await threads(flags))) medians[`threads_${k}`] = v;
        for (const [k, v] of Object.entries(await l4(flags))) medians[`l4_${k}`] = v;
        return medians;
      };
    },
  },
  "balancer-floor": {
    about: "balancer vs a bytes-only Deno relay vs HAProxy: CPU and syscalls per request, c=16-256",
    load: async () => (await import("./balancer_floor.ts")).run,
  },
  "balancer-dispatch": {
    about: "the balancer's dispatcher alone, in process: CPU ns per request at c=64 and c=4",
    load: async () => (await import("./balancer_dispatch.ts")).run,
  },
  "balancer-shapes": {
    about: "balancer pass-through with what users send: ascii, objects with unicode, spaced JSON",
    load: async () => (await import("./balancer_shapes.ts")).run,
  },
  "balancer-hostile": {
    about: "legitimate latency and throughput beside clients that pipeline and never read",
    load: async () => (await import("./balancer_hostile.ts")).run,
  },
  "balancer-threads": {
    about: "balancer --threads 1 vs 2 over the same servers: c=64 req/s and CPU per request",
    load: async () => (await import("./balancer_threads.ts")).run,
  },
  "balancer-l4": {
    about:
      "balancer --mode tcp vs HAProxy mode tcp vs nginx stream over nginx: wrk req/s, p99, CPU",
    load: async () => (await import("./balancer_l4.ts")).run,
  },
  "json-parse": {
    about: "parseJson (V8's escaped-key bug worked around) vs JSON.parse, in-process, per shape",
    load: async () => (await import("./json_parse.ts")).run,
  },
  up: {
    about: "dist up of the default topology: time to every instance ready, RSS of the topology",
    load: async () => (await import("./up.ts")).run,
  },
  dashboard: {
    about: "dist up's dashboard: CPU of the launcher and instances with the page closed and open",
    load: async () => (await import("./dashboard.ts")).run,
  },
  client: {
    about: "--rate precision: start lag and latency at 1,000 and 10,000 req/s vs closed loop c=1",
    load: async () => (await import("./client.ts")).run,
  },
  binder: {
    about: "binder.lookup c=64 throughput, replication delay A→B p50/p99, catch-up of 10,000",
    load: async () => (await import("./binder.ts")).run,
  },
  idle: {
    about:
      "RSS per idle connection: 10,000 connections to dist, to a bare Deno server, to nats-server",
    load: async () => (await import("./idle.ts")).run,
  },
  tls: {
    about: "TLS vs plain TCP: RPC echo c=64, broker 1→1, connection setups/s and CPU, idle RSS",
    load: async () => (await import("./tls.ts")).run,
  },
  broker: {
    about: "dist broker vs nats-server: 1→1 msgs/s, 1→4 deliveries/s, latency at 10k/s, RSS",
    load: async () => (await import("./broker.ts")).run,
  },
  "broker-shapes": {
    about:
      "dist broker with each value shape (string, object, nested, unicode, mixed, msgpack) vs NATS",
    load: async () => (await import("./broker_shapes.ts")).run,
  },
  "broker-flood": {
    about: "issue 17's floods: 200,000 never-reading subscriptions, 60,000 deep topics; RSS/count",
    load: async () => (await import("./broker_flood.ts")).run,
  },
  "broker-groups": {
    about: "queue groups: 1 → group of 4 readers vs 1 → 1 plain, msgs/s, CPU per delivery, spread",
    load: async () => (await import("./broker_groups.ts")).run,
  },
  "broker-e2e": {
    about: "dist client library vs nats.js from separate processes: flat-out rate, p99 at 10k/s",
    load: async () => (await import("./broker_e2e.ts")).run,
  },
  durable: {
    about: "publish-as-request: memory vs --data-dir --fsync off/batch/always; binder.register",
    load: async () => (await import("./durable.ts")).run,
  },
  "durable-restart": {
    about:
      "a broker restarted on 1,000,000 retained values: time until it answers, until all is read",
    load: async () => (await import("./durable_restart.ts")).run,
  },
  metrics: {
    about: "--metrics off vs on: RPC c=64 req/s, broker 1→4 deliveries/s, a call's wrap, a scrape",
    load: async () => (await import("./metrics.ts")).run,
  },
  mqtt: {
    about: "broker --mqtt-port vs Mosquitto: QoS 0/1 1→1 and 1→4 msgs/s, CPU, latency, idle RSS",
    load: async () => (await import("./mqtt.ts")).run,
  },
  "mqtt-floor": {
    about:
      "the runtime's floor under an idle MQTT connection: bare sockets, node:net, dist's front",
    load: async () => (await import("./mqtt_floor.ts")).run,
  },
  auth: {
    about: "authentication: handshakes/s without, with a token, a users file; scrypt; RPC c=64",
    load: async () => (await import("./auth.ts")).run,
  },
};

// `deno task bench -- --quick` passes the "--" through: drop it.
const args = Deno.args[0] === "--" ? Deno.args.slice(1) : Deno.args;
const { values, positionals } = parseArgs({
  args,
  allowPositionals: true,
  options: {
    runs: { type: "string", default: "5" },
    duration: { type: "string", default: "5s" },
    connections: { type: "string", default: "1" },
    quick: { type: "boolean", default: false },
    help: { type: "boolean", short: "h", default: false },
  },
});
if (values.help) {
  console.log("deno task bench [SUITE...] [--quick] [--runs N] [--duration 5s] [--connections N]");
  for (const [name, s] of Object.entries(SUITES)) console.log(`  ${name.padEnd(10)} ${s.about}`);
  Deno.exit(0);
}
const unknown = positionals.filter((p) => !Object.hasOwn(SUITES, p));
if (unknown.length > 0) {
  console.error(
    `bench: unknown suite ${unknown.join(", ")} (suites: ${Object.keys(SUITES).join(", ")})`,
  );
  Deno.exit(2);
}
const flags: BenchFlags = {
  quick: values.quick!,
  runs: values.quick ? 1 : Number(values.runs),
  duration: values.quick ? "1s" : values.duration!,
  connections: Number(values.connections),
};
const chosen = positionals.length > 0 ? positionals : Object.keys(SUITES);
const all: Record<string, Record<string, number>> = {};
for (const name of chosen) {
  console.log(`\n== ${name}: ${SUITES[name].about}`);
  all[name] = await (await SUITES[name].load())(flags);
}
console.log(JSON.stringify({ medians: all }));
