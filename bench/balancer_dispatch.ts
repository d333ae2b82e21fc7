/**
 * `deno task bench balancer-dispatch`: the balancer's dispatcher alone, in
 * process, no sockets (roles/balancer/forward.ts with its shares, slots,
 * unread bytes, pacing, runs and health): its CPU time per request. Three
 * backends of 128 slots; 4 client connections of one source, each keeping
 * `depth` requests on the backends (16: c=64; 1: c=4); each turn answers
 * what the last one sent (a backend's read: a run of one connection's
 * answers) and each connection sends again as many as came back, on a clock
 * that moves 0.02 ms a step. With DIST_BASELINE=DIR, that checkout's
 * dispatcher runs too, alternating (`base_…` rows). Each side and depth runs
 * in a process of its own: two dispatchers in one isolate share its inline
 * caches and JIT budget, and the second one measured paid for the first.
 */
import { fileURLToPath } from "node:url";
import type { BenchFlags } from "./_common.ts";
import { Rounds } from "./_common.ts";
import { DistError } from "../wire/mod.ts";

/** What the bench uses of roles/balancer/mod.ts (of this checkout or the baseline's). */
type Balancer = typeof import("../roles/balancer/mod.ts");

/** A request as the balancer makes one (relay.ts's RawJob: a class, one shape). */
class BenchJob {
  readonly size = 64;
  readonly idempotent = true;
  attempts = 0;
  deadline = 0;
  sentAt = 0;
  takenAt = 0;
  queuedBytes = 0;
  constructor(readonly flow: object) {}
}

/** CPU time of this thread (ns): the machine's other load does not count. */
function threadCpuNs(): number {
  return Number(Deno.readTextFileSync("/proc/thread-self/schedstat").split(" ")[0]);
}

/** ns of this thread's CPU per request over `turns` turns at `depth` per connection. */
function measure(lb: Balancer, depth: number, turns: number): number {
  let now = 1_000_000;
  const pool = new lb.Pool();
  for (const name of ["b1", "b2", "b3"]) {
    const b = new lb.Backend("server", name, { capacity: 128, rules: { rise: 2, fall: 3 } });
    b.onConnected();
    pool.add(b);
  }
  const flows = [{}, {}, {}, {}];
  let sent: BenchJob[] = [];
  const dispatcher = new lb.Dispatcher<BenchJob>(pool, lb.createPolicy("round-robin"), {
    send(job) {
      sent.push(job);
      return true;
    },
    reject() {
      throw new Error("A request was refused");
    },
    sizeOf: (job) => job.size,
    abandoned: () => false,
    held: () => false,
  }, {
    queueLimit: 10_000,
    queueBytes: 64 * 1024 * 1024,
    queueTimeoutMs: 3_000,
    retries: 2,
    budget: new lb.RetryBudget({ now: () => now }),
    now: () => now,
    sourceOf: () => "127.0.0.1",
    unread: () => false,
  });
  let requests = 0;
  const backBy = new Map<object, number>();
  const turn = () => {
    const answered = sent;
    sent = [];
    now += 0.02;
    backBy.clear();
    for (const job of answered) {
      dispatcher.finish(job, "answered");
      backBy.set(job.flow, (backBy.get(job.flow) ?? 0) + 1);
    }
    for (const flow of flows) {
      now += 0.02;
      const n = answered.length === 0 ? depth : backBy.get(flow) ?? 0;
      for (let i = 0; i < n; i++) {
        dispatcher.submit(new BenchJob(flow));
        requests++;
      }
    }
  };
  for (let i = 0; i < turns / 5; i++) turn();
  const [n0, cpu0] = [requests, threadCpuNs()];
  for (let i = 0; i < turns; i++) turn();
  const ns = (threadCpuNs() - cpu0) / (requests - n0);
  dispatcher.close(new DistError("UNAVAILABLE", "Done"));
  return ns;
}

/** ns per request at `depth` of the dispatcher of checkout `dir` (this one: ""), in a process of its own. */
async function measureIn(dir: string, depth: number, turns: number): Promise<number> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", fileURLToPath(import.meta.url), dir, String(depth), String(turns)],
    stdout: "piped",
    stderr: "inherit",
  }).output();
  const ns = Number(new TextDecoder().decode(out.stdout).trim());
  if (!out.success || !(ns > 0)) {
    throw new Error(`The dispatcher bench of ${dir || "this checkout"} failed`);
  }
  return ns;
}

// A side's process: `deno run -A bench/balancer_dispatch.ts DIR DEPTH TURNS` prints ns per request.
if (import.meta.main) {
  const [dir, depth, turns] = Deno.args;
  const lb = await import(dir ? `file://${dir}/roles/balancer/mod.ts` : "../roles/balancer/mod.ts");
  console.log(measure(lb as Balancer, Number(depth), Number(turns)));
}

export async function run(flags: BenchFlags): Promise<Record<string, number>> {
  const sides: [string, string][] = [["", ""]];
  const dir = Deno.env.get("DIST_BASELINE");
  if (dir !== undefined) sides.push(["base_", dir]);
  const rounds = new Rounds();
  // About 3 M requests a side at depth 16 and 0.4 M at depth 1, each round.
  const turns = flags.quick ? 2_000 : 50_000;
  console.log(
    `${flags.runs} round(s); dispatcher in process (one per side and depth), 3 backends, ` +
      `4 connections; sides ` + sides.map(([s]) => s || "this").join(", "),
  );
  for (let round = 1; round <= flags.runs; round++) {
    for (let k = 0; k < sides.length; k++) {
      const [side, from] = sides[(round - 1 + k) % sides.length];
      rounds.add(`${side}c64_ns_per_req`, await measureIn(from, 16, turns));
      rounds.add(`${side}c4_ns_per_req`, await measureIn(from, 1, turns * 2));
    }
    rounds.printRound("balancer-dispatch", round);
  }
  const m = rounds.medians();
  console.log(
    `dispatcher CPU per request: c=64 ${m.c64_ns_per_req.toFixed(0)} ns, c=4 ` +
      `${m.c4_ns_per_req.toFixed(0)} ns` +
      (dir === undefined ? "" : `; baseline c=64 ${m.base_c64_ns_per_req.toFixed(0)} ns, c=4 ` +
        `${m.base_c4_ns_per_req.toFixed(0)} ns`),
  );
  return m;
}
