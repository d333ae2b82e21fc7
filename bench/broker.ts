/**
 * The broker suite (issue 7's figures), dist against nats-server in the
 * same run, each round alternating which goes first:
 *
 * 1. 1 publisher → 1 subscriber, 128-byte values, fire-and-forget:
 *    messages/s received end to end (every message counted where it
 *    arrives; target ≥ 2× NATS);
 * 2. 1 publisher → 4 subscribers: deliveries/s (target ≥ 2× NATS);
 * 3. publish-to-delivery latency at a fixed 10,000 msgs/s for 3 s: p50 / p99;
 * 4. the broker's RSS with 100,000 retained topics of 128 bytes, and its
 *    peak RSS under full load with one subscriber that stopped reading
 *    (policy disconnect, then drop-oldest).
 *
 * Clients run in Worker threads of this process (bench/broker_worker.ts):
 * one thread per publisher and per subscriber, as separate processes would
 * have, with shared counters so the publisher never runs more than a
 * window ahead of the slowest subscriber (nothing is lost, so every
 * message counts). NATS uses the npm `nats` client under Deno; nats-server
 * runs as a child on a free port and is skipped with a message when it is
 * not installed.
 */
import { dial } from "../wire/mod.ts";
import { type DistProcess, freePort, startDist, type StartOptions } from "../tests/helpers/dist.ts";
import { type BenchFlags, cpuUs, mib, onPath, Rounds, rssOf } from "./_common.ts";
import type { Shape, WorkerReport, WorkerTask } from "./broker_worker.ts";
import { shapeRound, shapeSummary } from "./broker_shapes.ts";
import { jsonFrame } from "../tests/helpers/raw.ts";

const WORKER = new URL("./broker_worker.ts", import.meta.url);
const PAYLOAD = 128;
const ORIGIN = performance.timeOrigin;
/** A run that makes no progress for this long has lost messages. */
const STALL_MS = 10_000;

type System = "dist" | "nats";

interface LoadResult {
  msgsPerS: number;
  deliveriesPerS: number;
  delays: number[];
  /** CPU time of the broker per message published (µs). */
  serverCpuUs: number;
  /** CPU time of the clients (this process: the worker threads) per message (µs). */
  clientCpuUs: number;
}

function startWorker(task: WorkerTask): { worker: Worker; next: () => Promise<WorkerReport> } {
  const worker = new Worker(WORKER, { type: "module" });
  const inbox: WorkerReport[] = [];
  let wake: (() => void) | undefined;
  worker.onmessage = (e: MessageEvent<WorkerReport>) => {
    inbox.push(e.data);
    wake?.();
  };
  worker.onerror = (e) => {
    e.preventDefault();
    inbox.push({ kind: "done", error: e.message });
    wake?.();
  };
  worker.postMessage(task);
  const next = async (): Promise<WorkerReport> => {
    while (inbox.length === 0) await new Promise<void>((r) => wake = r);
    wake = undefined;
    return inbox.shift()!;
  };
  return { worker, next };
}

/**
 * One publisher and `subs` subscribers on `port`; resolves when every
 * subscriber has received all `count` messages.
 * @throws {Error} when a subscriber stops getting messages (loss)
 */
export async function loadRun(
  system: System,
  server: { port: number; pid: number },
  subs: number,
  count: number,
  options: {
    rate?: number;
    topic?: string;
    tlsCa?: string;
    shape?: Shape;
    codec?: string;
    layout?: "foreign";
  } = {},
): Promise<LoadResult> {
  const port = server.port;
  const counters = new SharedArrayBuffer(16 * 4);
  const shared = new Int32Array(counters);
  const topic = options.topic ?? (system === "dist" ? "/bench" : "bench");
  const base = {
    system,
    port,
    topic,
    count,
    payload: PAYLOAD,
    counters,
    origin: ORIGIN,
    tlsCa: options.tlsCa,
    shape: options.shape,
    layout: options.layout,
    codec: options.codec,
  };
  const workers: Worker[] = [];
  try {
    const subscribers = Array.from({ length: subs }, (_, index) => {
      const w = startWorker({ ...base, role: "sub", index, latency: options.rate !== undefined });
      workers.push(w.worker);
      return w;
    });
    for (const s of subscribers) {
      const r = await s.next();
      if (r.kind !== "ready") throw new Error(`${system} subscriber: ${r.error}`);
    }
    const pub = startWorker({
      ...base,
      role: "pub",
      index: 0,
      subscribers: subs,
      rate: options.rate,
    });
    workers.push(pub.worker);
    const cpu0 = [cpuUs(server.pid), cpuUs("self")];
    const t0 = performance.now();
    const done = subscribers.map((s) => s.next());
    // Watch for a stall: a subscriber whose count stops moving has lost messages.
    let last = -1;
    let lastMove = performance.now();
    let settled = false;
    const all = Promise.all(done).finally(() => settled = true);
    while (!settled) {
      await Promise.race([all, new Promise((r) => setTimeout(r, 200))]);
      let total = 0;
      for (let i = 0; i < subs; i++) total += Atomics.load(shared, i);
      if (total !== last) [last, lastMove] = [total, performance.now()];
      if (!settled && performance.now() - lastMove > STALL_MS) {
        throw new Error(
          `${system}: no progress for ${STALL_MS} ms: received ${
            Array.from(shared.subarray(0, subs)).join(", ")
          } of ${count} (lost messages)${system === "dist" ? await brokerSays(port) : ""}`,
        );
      }
    }
    const reports = await all;
    const elapsed = (performance.now() - t0) / 1000;
    const cpu1 = [cpuUs(server.pid), cpuUs("self")];
    for (const r of reports) {
      if (r.kind !== "done" || r.error || r.received !== count) {
        throw new Error(`${system} subscriber: ${JSON.stringify(r)}`);
      }
    }
    const p = await pub.next();
    if (p.kind === "done" && p.error) throw new Error(`${system} publisher: ${p.error}`);
    const delays = reports.flatMap((r) => r.kind === "done" && r.delays ? [...r.delays] : []);
    return {
      msgsPerS: count / elapsed,
      deliveriesPerS: (count * subs) / elapsed,
      delays,
      serverCpuUs: (cpu1[0] - cpu0[0]) / count,
      clientCpuUs: (cpu1[1] - cpu0[1]) / count,
    };
  } finally {
    for (const w of workers) w.terminate();
  }
}

/** What the broker counts of cut-off and dropped deliveries (for a stalled run's error). */
async function brokerSays(port: number): Promise<string> {
  try {
    const peer = await dial({ host: "127.0.0.1", port }, { role: "bench", name: "stalled" });
    const s = await peer.call("sys.stats") as Record<string, unknown>;
    peer.close();
    return `; broker: slow_consumers ${s.slow_consumers}, dropped ${s.dropped}, queued ${s.queued_bytes}` +
      `, connections ${s.connections}, memory ${JSON.stringify(s.memory)}`;
  } catch (err) {
    return `; broker stats: ${err}`;
  }
}

function quantile(sorted: number[], q: number): number {
  return sorted.length === 0
    ? NaN
    : sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)];
}

/**
 * `dist args` from a checkout's main.ts (`dir`: another one for an A/B), through a
 * DIST_BIN script; `prefix` goes before deno on its command line (e.g. `stdbuf -oL`).
 */
export async function startCheckout(
  dir: string,
  args: string[],
  opts: StartOptions = {},
  prefix = "",
): Promise<DistProcess> {
  const script = await Deno.makeTempFile({ prefix: "dist-checkout-" });
  await Deno.writeTextFile(
    script,
    `#!/bin/sh\nexec ${prefix} "${Deno.execPath()}" run -A "${dir}/main.ts" "$@"\n`,
  );
  await Deno.chmod(script, 0o755);
  Deno.env.set("DIST_BIN", script);
  try {
    return await startDist(args, opts);
  } finally {
    Deno.env.delete("DIST_BIN");
    await Deno.remove(script);
  }
}

/** nats-server as a child on a free port, stopped by pid. */
export async function startNats(): Promise<
  { port: number; pid: number; stop: () => Promise<void> } | undefined
> {
  if (!await onPath("nats-server")) {
    console.log("skipped: nats-server not installed (the NATS comparison needs it)");
    return undefined;
  }
  const port = freePort();
  const child = new Deno.Command("nats-server", {
    args: ["-a", "127.0.0.1", "-p", String(port)],
    stdout: "null",
    stderr: "null",
  }).spawn();
  const stop = async () => {
    try {
      child.kill("SIGTERM");
    } catch {
      // Already gone.
    }
    await child.status;
  };
  for (let i = 0; i < 100; i++) {
    try {
      (await Deno.connect({ hostname: "127.0.0.1", port })).close();
      return { port, pid: child.pid, stop };
    } catch {
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  await stop();
  throw new Error("nats-server did not start listening");
}

/**
 * Both sides' heartbeat for the RSS runs' own connections: storing 100,000
 * retained values at load 11 left the bench's connection without a pong for
 * 3 s (the default's limit), and the run failed.
 */
const SLOW_HEARTBEAT = ["--heartbeat", "5000"];

/** RSS of a fresh broker holding `topics` retained values of PAYLOAD bytes. */
async function retainedRss(topics: number) {
  const broker = await startDist(["broker", "--port", "0", ...SLOW_HEARTBEAT]);
  try {
    const idle = rssOf(broker.child.pid);
    const peer = await dial({ host: "127.0.0.1", port: broker.port }, {
      role: "bench",
      name: "rss",
      heartbeatMs: 5000,
    });
    const value = "v".repeat(PAYLOAD);
    for (let i = 0; i < topics; i++) {
      peer.notify("broker.publish", { topic: `/rss/${i % 100}/${i}`, value });
      if (i % 1000 === 999) await peer.conn.drained(64 * 1024);
    }
    const stats = await peer.call("sys.stats") as { retained: { count: number; bytes: number } };
    peer.close();
    return { idle, full: rssOf(broker.child.pid), retained: stats.retained };
  } finally {
    await broker.stop();
  }
}

/** Peak RSS of a fresh broker under a 1→1 load while another subscriber never reads. */
async function stalledRss(count: number, policy: string) {
  const broker = await startDist(["broker", "--port", "0", ...SLOW_HEARTBEAT]);
  let peak = 0;
  const sampler = setInterval(() => peak = Math.max(peak, rssOf(broker.child.pid)), 50);
  const raw = await Deno.connect({ hostname: "127.0.0.1", port: broker.port });
  try {
    const idle = rssOf(broker.child.pid);
    await raw.write(
      jsonFrame({ op: "hello", v: 1, codec: "json", role: "bench", name: "stalled" }),
    );
    await raw.write(
      jsonFrame({ id: 1, method: "broker.subscribe", params: { topic: "/bench", policy } }),
    );
    // From here on it never reads.
    const result = await loadRun("dist", { port: broker.port, pid: broker.child.pid }, 1, count);
    peak = Math.max(peak, rssOf(broker.child.pid));
    const peer = await dial({ host: "127.0.0.1", port: broker.port }, {
      role: "bench",
      name: "s",
      heartbeatMs: 5000,
    });
    const stats = await peer.call("sys.stats") as Record<string, number>;
    peer.close();
    return { idle, peak, msgsPerS: result.msgsPerS, stats };
  } finally {
    clearInterval(sampler);
    try {
      raw.close();
    } catch {
      // Cut off by the broker already.
    }
    await broker.stop();
  }
}

/** The stalled-subscriber rows: `count` messages 1 → 1 beside a subscriber that never reads, per policy. */
async function stalledRows(count: number, rounds: Rounds): Promise<void> {
  for (const policy of ["disconnect", "drop-oldest"]) {
    const stalled = await stalledRss(count, policy);
    rounds.add(`dist_stalled_${policy}_peak_rss_bytes`, stalled.peak);
    rounds.add(`dist_stalled_${policy}_msgs_per_s`, stalled.msgsPerS);
    console.log(
      `stalled subscriber (${policy}): broker RSS idle ${mib(stalled.idle)}, peak ${
        mib(stalled.peak)
      } under ${
        Math.round(stalled.msgsPerS)
      } msgs/s to the other subscriber; slow_consumers ${stalled.stats.slow_consumers}, dropped ${stalled.stats.dropped}, queued ${stalled.stats.queued_bytes} bytes`,
    );
  }
}

export async function run(flags: BenchFlags): Promise<Record<string, number>> {
  const n1 = flags.quick ? 100_000 : 1_000_000;
  const n4 = flags.quick ? 50_000 : 400_000;
  const latencySeconds = flags.quick ? 1 : 3;
  const retainedTopics = flags.quick ? 20_000 : 100_000;
  if (Deno.env.get("BROKER_ONLY") === "stalled") {
    // Only the stalled-subscriber rows, once per round (fresh brokers, no NATS): medians in a minute.
    const rounds = new Rounds();
    for (let round = 1; round <= flags.runs; round++) await stalledRows(n1 / 2, rounds);
    return rounds.medians();
  }
  console.log(
    `${flags.runs} round(s); ${PAYLOAD}-byte values, fire-and-forget; 1→1 ${n1} msgs, 1→4 ` +
      `${n4} msgs; dist and NATS alternate which goes first; medians`,
  );
  // The clients are threads of this process: on a loaded machine a subscriber's thread
  // starved for 3 s (the default heartbeat's limit) is not a dead peer.
  const dist = await startDist(["broker", "--port", "0", "--heartbeat", "5000"]);
  const nats = await startNats();
  const rounds = new Rounds();
  try {
    for (let round = 1; round <= flags.runs; round++) {
      const order: System[] = nats === undefined
        ? ["dist"]
        : round % 2
        ? ["dist", "nats"]
        : ["nats", "dist"];
      const one: Partial<Record<System, number>> = {};
      const four: Partial<Record<System, number>> = {};
      for (const system of order) {
        const server = system === "dist" ? { port: dist.port, pid: dist.child.pid } : nats!;
        const a = await loadRun(system, server, 1, n1);
        const b = await loadRun(system, server, 4, n4);
        one[system] = a.msgsPerS;
        four[system] = b.deliveriesPerS;
        rounds.add(`${system}_1to1_server_cpu_us_per_msg`, a.serverCpuUs);
        rounds.add(`${system}_1to1_client_cpu_us_per_msg`, a.clientCpuUs);
        rounds.add(`${system}_1to4_server_cpu_us_per_msg`, b.serverCpuUs);
        rounds.add(`${system}_1to4_client_cpu_us_per_msg`, b.clientCpuUs);
      }
      for (const system of order) {
        rounds.add(`${system}_1to1_msgs_per_s`, one[system]!);
        rounds.add(`${system}_1to4_deliveries_per_s`, four[system]!);
      }
      if (nats !== undefined) {
        rounds.add("ratio_1to1", one.dist! / one.nats!);
        rounds.add("ratio_1to4", four.dist! / four.nats!);
      }
      for (const system of order) {
        const server = system === "dist" ? { port: dist.port, pid: dist.child.pid } : nats!;
        const { delays } = await loadRun(system, server, 1, 10_000 * latencySeconds, {
          rate: 10_000,
          topic: system === "dist" ? "/latency" : "latency",
        });
        delays.sort((a, b) => a - b);
        rounds.add(`${system}_latency_p50_ms`, quantile(delays, 0.5));
        rounds.add(`${system}_latency_p99_ms`, quantile(delays, 0.99));
      }
      await shapeRound(flags, round, dist, nats, rounds);
      rounds.printRound("broker", round);
    }
  } finally {
    await dist.stop();
    await nats?.stop();
  }
  const retained = await retainedRss(retainedTopics);
  rounds.add("dist_idle_rss_bytes", retained.idle);
  rounds.add(`dist_rss_${retainedTopics}_retained_bytes`, retained.full);
  await stalledRows(n1 / 2, rounds);
  const m = rounds.medians();
  const f = (x: number | undefined) => x === undefined ? "n/a" : Math.round(x).toLocaleString("en");
  const ratio = (x: number | undefined) =>
    x === undefined ? "" : ` = ${x.toFixed(2)}× NATS (target ≥ 2×)`;
  console.log(
    `1→1 msgs/s:        dist ${f(m.dist_1to1_msgs_per_s)}  nats ${f(m.nats_1to1_msgs_per_s)}` +
      ratio(m.ratio_1to1),
  );
  console.log(
    `1→4 deliveries/s:  dist ${f(m.dist_1to4_deliveries_per_s)}  nats ${
      f(m.nats_1to4_deliveries_per_s)
    }` + ratio(m.ratio_1to4),
  );
  console.log(
    `latency at 10,000 msgs/s: dist p50 ${m.dist_latency_p50_ms?.toFixed(3)} ms p99 ${
      m.dist_latency_p99_ms?.toFixed(3)
    } ms; nats p50 ${m.nats_latency_p50_ms?.toFixed(3) ?? "n/a"} ms p99 ${
      m.nats_latency_p99_ms?.toFixed(3) ?? "n/a"
    } ms`,
  );
  shapeSummary(m);
  console.log(
    `broker RSS: idle ${
      mib(retained.idle)
    }, with ${retainedTopics} retained topics of ${PAYLOAD} ` +
      `bytes ${mib(retained.full)} (store counts ${retained.retained.count} values, ${
        mib(retained.retained.bytes)
      })`,
  );
  return m;
}
