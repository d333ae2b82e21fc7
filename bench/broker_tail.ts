/**
 * The broker's own latency tail at 10,000 msgs/s (issue 17): the broker
 * suite's raw clients (bench/broker_worker.ts, threads of this process, the
 * same for both systems) publish 1 → 1 at a fixed 10,000 msgs/s to dist and
 * to nats-server in turn, alternating which goes first, and each run's
 * send-to-arrival delays give p50 / p90 / p99 / p99.9 / max. With no client
 * library on either side, what is left between the two systems is the
 * server. `TAIL_BASE=/other/checkout` adds that checkout's broker as a third
 * side (A; this one is B), for an A/B; `TAIL_V8=flags` starts B with those
 * V8 flags (DENO_V8_FLAGS); `TAIL_SLICE_US=n` asks the scheduler for n µs
 * slices for B's main thread (sched_setattr); `TAIL_NATS=0` leaves NATS out; `TAIL_GC=1` also traces B's collections and
 * prints, per run, how many scavenges and full collections it made and the
 * longest pause. `TAIL_SCHED=1` records the scheduler's switches and
 * wake-ups around each run (`perf`: see bench/sched_wakes.ts) and prints how
 * long each server's threads waited for a core once woken by the clients,
 * by their own threads, by anything else, and once preempted.
 *
 *   [TAIL_ROUNDS=8] [TAIL_SECONDS=3] [TAIL_BASE=…] [TAIL_V8=…] [TAIL_GC=1] [TAIL_SCHED=1] \
 *     deno run -A bench/broker_tail.ts
 */
import { type DistProcess, startDist } from "../tests/helpers/dist.ts";
import { median } from "./_common.ts";
import { loadRun, startCheckout, startNats } from "./broker.ts";
import { quantile, startSchedTrace, type Waits, waitsOf } from "./sched_wakes.ts";

const env = (name: string, fallback: string) => Deno.env.get(name) ?? fallback;
const ROUNDS = Number(env("TAIL_ROUNDS", "8"));
const SECONDS = Number(env("TAIL_SECONDS", "3"));
const base = Deno.env.get("TAIL_BASE");
const traceGc = Deno.env.get("TAIL_GC") === "1";
const traceSched = Deno.env.get("TAIL_SCHED") === "1";
const v8 = [env("TAIL_V8", ""), traceGc ? "--trace-gc" : ""].filter((f) => f !== "").join(",");
const brokerArgs = ["broker", "--port", "0", "--heartbeat", "5000"];
const QUANTILES = [["p50", 0.5], ["p90", 0.9], ["p99", 0.99], ["p999", 0.999]] as const;

/** A server's threads' scheduler counters (ns on CPU, ns runnable but waiting, slices). */
function sched(pid: number): number[] {
  const sum = [0, 0, 0];
  for (const task of Deno.readDirSync(`/proc/${pid}/task`)) {
    try {
      const f = Deno.readTextFileSync(`/proc/${pid}/task/${task.name}/schedstat`).split(" ");
      for (let i = 0; i < 3; i++) sum[i] += Number(f[i]);
    } catch {
      // The thread ended meanwhile.
    }
  }
  return sum;
}

/**
 * Asks the scheduler for `us` µs slices for thread `tid` (sched_setattr, SCHED_OTHER with a
 * runtime: Linux 6.12+'s EEVDF lets a task with a shorter slice preempt at its wakeup).
 */
function setSlice(tid: number, us: number): void {
  const lib = Deno.dlopen("libc.so.6", {
    syscall: { parameters: ["i64", "i64", "buffer", "i64"], result: "i64" },
  });
  const attr = new DataView(new ArrayBuffer(56));
  attr.setUint32(0, 56, true); // size; policy 0 (SCHED_OTHER), flags 0, nice 0
  attr.setBigUint64(24, BigInt(us * 1000), true); // sched_runtime (ns)
  const r = lib.symbols.syscall(314n, BigInt(tid), new Uint8Array(attr.buffer), 0n);
  lib.close();
  if (r !== 0n) throw new Error(`sched_setattr ${tid}: ${r}`);
}

/** The voluntary context switches of a server's main thread so far: its sleeps, so its wake-ups. */
function wakeUps(pid: number): number {
  try {
    const status = Deno.readTextFileSync(`/proc/${pid}/task/${pid}/status`);
    return Number(/voluntary_ctxt_switches:\s+(\d+)/.exec(status)?.[1] ?? NaN);
  } catch {
    return NaN;
  }
}

type Side = { name: string; system: "dist" | "nats"; server: { port: number; pid: number } };
const mine = await startMine();

/**
 * This checkout's broker, with TAIL_V8's flags; traced through `stdbuf -oL`, or V8's trace
 * sits in stdout's buffer (4 KiB) and the end of it is lost when the broker stops.
 */
function startMine(): Promise<DistProcess> {
  const opts = v8 === "" ? {} : { env: { DENO_V8_FLAGS: v8 } };
  if (!traceGc) return startDist(brokerArgs, opts);
  return startCheckout(new URL("..", import.meta.url).pathname, brokerArgs, opts, "stdbuf -oL");
}
const sliceUs = Number(env("TAIL_SLICE_US", "0"));
if (sliceUs > 0) setSlice(mine.child.pid, sliceUs);
const other = base === undefined ? undefined : await startCheckout(base, brokerArgs);
const nats = env("TAIL_NATS", "1") === "1" ? await startNats() : undefined;
const sides: Side[] = [{
  name: "B",
  system: "dist",
  server: { port: mine.port, pid: mine.child.pid },
}];
if (other !== undefined) {
  sides.push({ name: "A", system: "dist", server: { port: other.port, pid: other.child.pid } });
}
if (nats !== undefined) sides.push({ name: "nats", system: "nats", server: nats });
const results: Record<string, number[]> = {};
const add = (key: string, v: number) => (results[key] ??= []).push(v);
let gcSeen = 0;

/** B's collections since the last call (its --trace-gc lines on stdout). */
function gcSince(): string {
  const lines = mine.stdout().split("\n").filter((l) =>
    / ms: (Scavenge|Mark-Compact|Minor)/.test(l)
  );
  const fresh = lines.slice(gcSeen);
  gcSeen = lines.length;
  const pauses = fresh.map((l) =>
    Number(/MB, (?:pooled: [\d.]+ MB, )?([\d.]+) \//.exec(l)?.[1] ?? 0)
  );
  const full = fresh.filter((l) => l.includes("Mark-Compact")).length;
  return `gc ${fresh.length - full} minor ${full} full, longest ${
    Math.max(0, ...pauses).toFixed(2)
  } ms`;
}

const WAIT_KINDS = ["client", "own", "other", "preempted"] as const;

/** A run's waits for a core: how many of each kind, their p50 / p99 (ms). */
function waitLine(w: Waits): string {
  return WAIT_KINDS.map((k) =>
    `${k === "preempted" ? k : `woken by ${k}`} ${w[k].length}× ${
      quantile(w[k], 0.5).toFixed(3)
    } / ${quantile(w[k], 0.99).toFixed(2)}`
  ).join(", ");
}

try {
  const run = (s: Side, count: number) =>
    loadRun(s.system, s.server, 1, count, {
      rate: 10_000,
      topic: s.system === "dist" ? "/latency" : "latency",
    });
  for (const s of sides) await run(s, 20_000); // unmeasured: each server's compiler
  if (traceGc) gcSince();
  for (let r = 0; r < ROUNDS; r++) {
    const order = r % 2 ? [...sides].reverse() : sides;
    const line: string[] = [];
    for (const s of order) {
      const trace = traceSched
        ? await startSchedTrace(`/tmp/broker_tail_sched_${Deno.pid}.data`)
        : undefined;
      const s0 = sched(s.server.pid), w0 = wakeUps(s.server.pid);
      const { delays } = await run(s, 10_000 * SECONDS);
      const [cpu, wait, slices] = sched(s.server.pid).map((v, i) => v - s0[i]);
      const wakes = (wakeUps(s.server.pid) - w0) / SECONDS;
      add(`${s.name} wakes_per_s`, wakes);
      const waits = trace && waitsOf(await trace.stop(), s.server.pid, Deno.pid);
      if (waits !== undefined) {
        for (const k of WAIT_KINDS) add(`${s.name} ${k}_wait_p99`, quantile(waits[k], 0.99));
      }
      add(`${s.name} cpu_us`, cpu / 1000 / (10_000 * SECONDS));
      add(`${s.name} wait_us`, wait / 1000 / slices);
      delays.sort((a, b) => a - b);
      const q = (x: number) =>
        delays[Math.min(delays.length - 1, Math.ceil(x * delays.length) - 1)];
      for (const [k, x] of QUANTILES) add(`${s.name} ${k}`, q(x));
      add(`${s.name} max`, delays[delays.length - 1]);
      line.push(
        `${s.name} p50 ${q(0.5).toFixed(3)} p99 ${q(0.99).toFixed(3)} max ${
          delays[delays.length - 1].toFixed(1)
        } cpu ${(cpu / 1e3 / (10_000 * SECONDS)).toFixed(2)} µs/msg, ${
          wakes.toFixed(0)
        } wake-ups/s, waits ${(wait / 1e3 / slices).toFixed(0)} µs${
          s.name === "B" && traceGc ? ` (${gcSince()})` : ""
        }${waits === undefined ? "" : `, ${waitLine(waits)}`}`,
      );
    }
    const load = Deno.loadavg().map((x) => x.toFixed(2)).join(" ");
    console.log(`round ${r + 1} (load ${load}): ${line.join("; ")}`);
  }
} finally {
  await mine.stop();
  if (traceGc) {
    await Deno.writeTextFile(env("TAIL_GC_FILE", "/tmp/broker_tail_gc.txt"), mine.stdout());
  }
  await other?.stop();
  await nats?.stop();
}
for (const s of sides) {
  const kinds = traceSched ? WAIT_KINDS.map((k) => `${k}_wait_p99`) : [];
  const cells = [...QUANTILES.map(([k]) => k), "max", "cpu_us", "wakes_per_s", "wait_us", ...kinds]
    .map((k) => `${k} ${median(results[`${s.name} ${k}`]).toFixed(3)}`);
  console.log(`${s.name}: medians of ${ROUNDS} runs of ${SECONDS} s (ms): ${cells.join(", ")}`);
}
if (nats !== undefined) {
  for (const s of sides.filter((x) => x.system === "dist")) {
    const ratio = median(results[`${s.name} p99`].map((v, i) => v / results["nats p99"][i]));
    console.log(`${s.name}/nats p99, median of paired ratios: ${ratio.toFixed(2)}`);
  }
}
