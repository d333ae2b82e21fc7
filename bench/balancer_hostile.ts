/**
 * The balancer under hostile clients (issue 16): clients that pipeline
 * small `add` requests on one connection without end and never read an
 * answer (bench/pipeline_client.ts in its `repeat` mode, each in its own
 * process), and a legitimate client beside them.
 *
 * Each round, for each target — straight at one `dist server`, and a
 * `dist balancer` over 2 servers (in alternating order) — and for 0, 1 and
 * 4 attackers: the attackers connect and start sending, then two
 * legitimate clients run at once on fresh connections for the run's
 * duration: one at 1,000 req/s (latency counted from the schedule: p50,
 * p99, errors), one a closed loop at concurrency 8 (throughput). Then the
 * attackers are stopped and the target settles before the next case. An
 * unattacked run comes before and after each attacked case, and the
 * attacked throughput is a ratio to the mean of the two.
 *
 * A fourth case, `spread`: one client on 16 connections from another
 * address (127.0.0.2), each keeping 48 requests out and reading its
 * answers (bench/spread_client.ts): within four shares per connection, so
 * only the shares per source (roles/balancer/shares.ts) hold it back.
 *
 * A fifth, `near`: sixteen connections from sixteen addresses
 * (127.0.0.2–17), each keeping 16 echoes of 4,000 bytes out (just under
 * the pacing line: hostile35 H12), reading their answers.
 *
 * A sixth, `held` (hostile37 K5): three connections (127.0.0.2–4) each
 * holding one `sleep` of 60 KB on the backends, twenty (127.0.0.5–24) each
 * sending a 10-byte echo every 400 ms; the legitimate c=8 client sends
 * echoes of 40,000 bytes instead (paced and large: pacing.ts; its p99 is
 * reported too), and so does it in the unattacked runs around it (`big`).
 *
 * With DIST_BASELINE=DIR, a balancer of that checkout over the same 2
 * servers is a third target (before/after in one run); DIR,DIR2,… adds one
 * target each (baseline, baseline2, …). DIST_HOSTILE_CASES
 * =0,near keeps only those cases (0, 1, 4, spread, near, held).
 *
 * Targets: through the balancer under attack, legitimate p99 ≤ 50 ms and
 * legitimate throughput ≥ 0.8× the unattacked figure of the same round.
 */
import { fileURLToPath } from "node:url";
import { dial } from "../wire/mod.ts";
import { type DistProcess, startDist } from "../tests/helpers/dist.ts";
import {
  balancerArgs,
  type BenchFlags,
  clientBench,
  mib,
  Rounds,
  rssOf,
  startServers,
} from "./_common.ts";

const ATTACKER = fileURLToPath(new URL("./pipeline_client.ts", import.meta.url));
const ATTACK_REQUESTS = 100_000;
const SPREAD = fileURLToPath(new URL("./spread_client.ts", import.meta.url));
/**
 * The cases: that many pipelining attackers, one client spread over
 * connections, sixteen near the pacing line, or K5's held sleeps beside a
 * client of 40 KB echoes.
 */
const ALL_CASES = [0, 1, 4, "spread", "near", "held"] as const;
type Case = typeof ALL_CASES[number] | "big";
const only = Deno.env.get("DIST_HOSTILE_CASES")?.split(",");
const CASES: Case[] = ALL_CASES.filter((c) => only === undefined || only.includes(String(c)));
/** The legitimate c=8 client's request in `held` and `big`: an echo of 40,000 bytes (K5's large client). */
const BIG = ["--op", "echo", "--payload", "40000"];
/** The unattacked case an attacked one is a ratio to: the same legitimate clients. */
const unattacked = (c: Case): Case => c === "held" || c === "big" ? "big" : 0;
/**
 * The order they run in, per target: an unattacked run before and after
 * every attacked case, whose throughput is a ratio to the mean of the two
 * (the machine is shared: its load drifts within a round).
 */
const PLAN: Case[] = [];
for (const c of CASES) {
  if (c === 0 || !CASES.includes(0)) {
    if (c !== 0) PLAN.push(c);
    continue;
  }
  const u = unattacked(c);
  if (PLAN.at(-1) !== u) PLAN.push(u);
  PLAN.push(c, u);
}
if (CASES.includes(0) && PLAN.length === 0) PLAN.push(0);

/** The spread client's arguments (after the port) in each case it plays (see the module note). */
const SPREAD_ARGS: Record<string, string[][]> = {
  spread: [["16", "48", "127.0.0.2"]],
  near: [["16", "16", "127.0.0.2-17", "4000"]],
  held: [["3", "1", "127.0.0.2-4", "60000", "0", "sleep:20000"], [
    "20",
    "1",
    "127.0.0.5-24",
    "10",
    "400",
  ]],
};

/** The spread clients of case `c` (see the module note) on `port`, started. */
async function spread(port: number, c: string) {
  const children = await Promise.all(SPREAD_ARGS[c].map(async (args) => {
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", SPREAD, String(port), ...args],
      stdin: "piped",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    const { value } = await reader.read();
    if (!value?.startsWith("ready")) throw new Error(`spread client did not start: ${value}`);
    return { child, reader };
  }));
  return {
    pids: children.map(({ child }) => child.pid),
    async stop(): Promise<number[]> {
      for (const { child, reader } of children) {
        await child.stdin.close();
        await reader.cancel().catch(() => {});
        await child.status;
      }
      return [];
    },
  };
}

/**
 * CPU time a process has used (user + system), in ms; 0 when it is gone.
 * With `children`, that of its children that ended and were waited for
 * (the legitimate clients, which end before it is read).
 */
function cpuMs(pid: number | "self", children = false): number {
  try {
    const fields = Deno.readTextFileSync(`/proc/${pid}/stat`).split(") ")[1].split(" ");
    return children
      ? (Number(fields[13]) + Number(fields[14])) * 10
      : (Number(fields[11]) + Number(fields[12])) * 10;
  } catch {
    return 0;
  }
}

/** CPU time the whole machine has used (every core, all but idle and iowait), in ms. */
function machineMs(): number {
  const f = Deno.readTextFileSync("/proc/stat").split("\n")[0].trim().split(/\s+/).slice(1)
    .map(Number);
  // user nice system idle iowait irq softirq steal
  return (f[0] + f[1] + f[2] + f[5] + f[6] + f[7]) * 10;
}

/**
 * Where the machine's CPU went during a case, as % of one core: the
 * target, its backends, the attackers' own processes, the legitimate
 * clients, and the machine as a whole (200 % is both cores busy; the rest
 * of it is other work on this shared machine and the bench itself).
 */
function cpuMeter(target: number, backends: number[], attackers: number[]) {
  const sum = (pids: number[]) => pids.reduce((t, p) => t + cpuMs(p), 0);
  const t0 = performance.now();
  const start = {
    target: cpuMs(target),
    backends: sum(backends),
    attackers: sum(attackers),
    legit: cpuMs("self", true),
    machine: machineMs(),
  };
  return {
    read() {
      const pct = (ms: number) => ms / (performance.now() - t0) * 100;
      return {
        cpu_pct: pct(cpuMs(target) - start.target),
        backends_cpu_pct: pct(sum(backends) - start.backends),
        attackers_cpu_pct: pct(sum(attackers) - start.attackers),
        legit_cpu_pct: pct(cpuMs("self", true) - start.legit),
        machine_cpu_pct: pct(machineMs() - start.machine),
      };
    },
  };
}

/** `count` attackers on `port`, each sending once it is connected. */
async function attack(port: number, count: number) {
  const procs = await Promise.all(Array.from({ length: count }, async () => {
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", ATTACKER, String(port), String(ATTACK_REQUESTS), "repeat"],
      stdin: "piped",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    const { value } = await reader.read();
    if (!value?.startsWith("ready")) throw new Error(`attacker did not start: ${value}`);
    return { child, reader };
  }));
  return {
    pids: procs.map(({ child }) => child.pid),
    /** Stops them; returns the bytes of requests each got the target to take. */
    async stop(): Promise<number[]> {
      return await Promise.all(procs.map(async ({ child, reader }) => {
        await child.stdin.close();
        const { value } = await reader.read();
        await reader.cancel().catch(() => {});
        await child.status;
        return Number(value?.match(/wrote (\d+)/)?.[1] ?? 0);
      }));
    },
  };
}

/**
 * Requests the backends of the balancer on `port` answered so far (every
 * client's: `balancer.backends`' `served`); 0 for a server.
 */
async function served(port: number, side: string): Promise<number> {
  if (side === "direct") return 0;
  const peer = await dial({ host: "127.0.0.1", port }, { role: "bench", name: "served" });
  try {
    const list = await peer.call("balancer.backends", undefined, { timeout: 5000 }) as {
      served?: number;
    }[];
    return list.reduce((t, b) => t + (b.served ?? 0), 0);
  } finally {
    peer.close();
  }
}

/** Waits until `address` answers sys.ping within 100 ms (the target has settled). */
async function settle(port: number): Promise<void> {
  const end = performance.now() + 30_000;
  while (performance.now() < end) {
    try {
      const peer = await dial({ host: "127.0.0.1", port }, { role: "bench", name: "settle" });
      const t0 = performance.now();
      await peer.call("sys.ping", undefined, { timeout: 2000 });
      peer.close();
      if (performance.now() - t0 < 100) return;
    } catch {
      // Not yet.
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** The pids of the servers behind `side` (s3 is the direct target itself; s1 and s2 are behind both balancers). */
function backendsOf(side: string, servers: DistProcess[]): number[] {
  return side === "direct" ? [] : [servers[0].child.pid, servers[1].child.pid];
}

/**
 * With DIST_BASELINE=DIR (a checkout of another version), `dist ARGS` of
 * that version, for a before/after comparison in the same run; `dir`: that
 * checkout instead.
 */
export async function startBaseline(
  args: string[],
  dir = Deno.env.get("DIST_BASELINE"),
): Promise<DistProcess | undefined> {
  if (dir === undefined) return undefined;
  const wrapper = await Deno.makeTempFile({ prefix: "dist-baseline-", suffix: ".sh" });
  await Deno.writeTextFile(
    wrapper,
    `#!/bin/sh\nexec "${Deno.execPath()}" run -A "${dir}/main.ts" "$@"\n`,
  );
  await Deno.chmod(wrapper, 0o755);
  const before = Deno.env.get("DIST_BIN");
  Deno.env.set("DIST_BIN", wrapper);
  try {
    return await startDist(args);
  } finally {
    if (before === undefined) Deno.env.delete("DIST_BIN");
    else Deno.env.set("DIST_BIN", before);
  }
}

/**
 * The legitimate load, both at once: 1,000 req/s (latency) and c=8
 * (throughput; `op`: its request instead of `add`). A run that could not even start (no handshake, the first
 * request refused) counts as no throughput, an infinite p99 and one error.
 */
function legit(address: string, duration: string, op: string[] = []) {
  const failed = (e: Error) => {
    console.log(`  legitimate client failed: ${e.message.split("\n")[0]}`);
    return { rps: 0, latency_ms: { p50: Infinity, p99: Infinity }, errors: { FAILED: 1 } };
  };
  return Promise.all([
    clientBench(address, ["--rate", "1000", "--concurrency", "64", "--duration", duration])
      .catch(failed),
    clientBench(address, ["--concurrency", "8", "--duration", duration, ...op]).catch(failed),
  ]);
}

export async function run(flags: BenchFlags): Promise<Record<string, number>> {
  // The attackers send until they are stopped: the whole window is under attack.
  const duration = "2s";
  const servers = await startServers();
  // s3 is the direct target; the balancer spreads over s1 and s2.
  const balancer = await startDist(balancerArgs(servers.slice(0, 2)));
  const targets: [string, DistProcess][] = [["direct", servers[2]], ["balancer", balancer]];
  // DIST_BASELINE=DIR,DIR2,…: baseline, baseline2, … (each a checkout), every one over s1 and s2.
  const dirs = Deno.env.get("DIST_BASELINE")?.split(",") ?? [];
  const baselines: DistProcess[] = [];
  for (const [i, dir] of dirs.entries()) {
    const b = (await startBaseline(balancerArgs(servers.slice(0, 2)), dir))!;
    baselines.push(b);
    targets.push([i === 0 ? "baseline" : `baseline${i + 1}`, b]);
  }
  console.log(
    `${flags.runs} round(s); attackers pipeline add requests (${ATTACK_REQUESTS} at a time, ` +
      `until stopped) and never read; legitimate load for ${duration}: 1,000 req/s (latency) ` +
      `and c=8 (throughput) at once`,
  );
  const rounds = new Rounds();
  try {
    await settle(balancer.port);
    for (let round = 1; round <= flags.runs; round++) {
      for (let k = 0; k < targets.length; k++) {
        const [side, target] = targets[(round - 1 + k) % targets.length];
        // The unattacked run before an attacked case, and an attacked case waiting for the one after.
        let before = 0;
        let waiting: { tag: string; rps: number } | undefined;
        await legit(target.address, "1s"); // warm-up
        for (const attackers of PLAN) {
          const tag = `${side}_${attackers}`;
          const a = typeof attackers === "number"
            ? await attack(target.port, attackers)
            : attackers === "big"
            ? await attack(target.port, 0)
            : await spread(target.port, attackers);
          // From the attackers' "ready" (their start-up is not the target's doing) to the legit clients' end.
          const meter = cpuMeter(target.child.pid, backendsOf(side, servers), a.pids);
          const big = attackers === "held" || attackers === "big";
          const both = legit(target.address, duration, big ? BIG : []);
          // The backends' answers over the middle second of the legitimate run (its clients'
          // start-up, when the attackers are alone, aside).
          await new Promise((r) => setTimeout(r, 700));
          const servedBefore = await served(target.port, side);
          await new Promise((r) => setTimeout(r, 1000));
          const servedAfter = await served(target.port, side);
          const [lat, thr] = await both;
          for (const [k, v] of Object.entries(meter.read())) rounds.add(`${tag}_${k}`, v);
          // What the backends answered for others meanwhile, per 1,000 legitimate requests
          // (theirs in that second taken as their rates: c=8's, and 1,000 a second).
          if (side !== "direct") {
            const mine = thr.rps + 1000;
            const others = servedAfter - servedBefore - mine;
            rounds.add(`${tag}_others_per_1k`, Math.max(0, others) / mine * 1000);
          }
          const rss = rssOf(target.child.pid);
          const took = await a.stop();
          const errors = Object.values(lat.errors as Record<string, number>)
            .concat(Object.values(thr.errors as Record<string, number>))
            .reduce((x, y) => x + y, 0);
          rounds.add(`${tag}_p50_ms`, lat.latency_ms.p50);
          rounds.add(`${tag}_p99_ms`, lat.latency_ms.p99);
          rounds.add(`${tag}_errors`, errors);
          rounds.add(`${tag}_rps`, thr.rps);
          if (big) rounds.add(`${tag}_c8_p99_ms`, thr.latency_ms.p99);
          rounds.add(`${tag}_rss`, rss);
          if (attackers === unattacked(attackers)) {
            if (waiting !== undefined) {
              rounds.add(`${waiting.tag}_rps_ratio`, waiting.rps / ((before + thr.rps) / 2));
              waiting = undefined;
            }
            before = thr.rps;
          } else {
            if (CASES.includes(0)) waiting = { tag, rps: thr.rps };
            if (typeof attackers === "number") {
              rounds.add(`${tag}_taken_kib`, took.reduce((x, y) => x + y, 0) / 1024 / attackers);
            }
          }
          await settle(target.port);
        }
      }
      rounds.printRound("balancer-hostile", round);
    }
  } finally {
    await balancer.stop();
    await Promise.all(baselines.map((b) => b.stop()));
    await Promise.all(servers.map((s) => s.stop()));
  }
  const m = rounds.medians();
  const f = (x: number | undefined, d = 0) => x === undefined ? "—" : x.toFixed(d);
  for (const [side] of targets) {
    for (const n of new Set(PLAN)) {
      const t = `${side}_${n}`;
      const name = n === "spread"
        ? "spread client"
        : n === "near"
        ? "16 × 16 × 4,000 B"
        : n === "big"
        ? "c=8 of 40 KB echoes, unattacked"
        : n === "held"
        ? "c=8 of 40 KB echoes, K5 (3 held, 20 idle)"
        : `${n} attacker(s)`;
      console.log(
        `${side.padEnd(8)} ${name}: legit p50 ${f(m[`${t}_p50_ms`], 2)} ms, p99 ` +
          `${f(m[`${t}_p99_ms`], 2)} ms, errors ${f(m[`${t}_errors`])}; c=8 ${f(m[`${t}_rps`])} ` +
          `req/s` + (n !== unattacked(n) ? ` (${f(m[`${t}_rps_ratio`], 2)}× unattacked)` : "") +
          (m[`${t}_c8_p99_ms`] === undefined ? "" : `, its p99 ${f(m[`${t}_c8_p99_ms`], 1)} ms`) +
          `; CPU % target ${f(m[`${t}_cpu_pct`])}, backends ${f(m[`${t}_backends_cpu_pct`])}, ` +
          `attackers ${f(m[`${t}_attackers_cpu_pct`])}, legit clients ${
            f(m[`${t}_legit_cpu_pct`])
          }, ` +
          `machine ${f(m[`${t}_machine_cpu_pct`])} of 200; RSS ${mib(m[`${t}_rss`])}` +
          (typeof n === "number" && n > 0
            ? `; each attacker got ${f(m[`${t}_taken_kib`])} KiB of requests taken`
            : "") +
          (n !== unattacked(n) && m[`${t}_others_per_1k`] !== undefined
            ? `; others' requests answered meanwhile ${f(m[`${t}_others_per_1k`])} per 1,000 legit`
            : ""),
      );
    }
  }
  console.log(
    `targets through the balancer under attack: p99 ≤ 50 ms (1: ${f(m.balancer_1_p99_ms, 1)}, ` +
      `4: ${f(m.balancer_4_p99_ms, 1)}), throughput ≥ 0.8× (1: ${
        f(m.balancer_1_rps_ratio, 2)
      }, 4: ${f(m.balancer_4_rps_ratio, 2)}); spread over 16 connections: p99 ${
        f(m.balancer_spread_p99_ms, 1)
      } ms, ${f(m.balancer_spread_rps_ratio, 2)}×; 16 × 16 × 4,000 B: p99 ${
        f(m.balancer_near_p99_ms, 1)
      } ms (direct ${f(m.direct_near_p99_ms, 1)}), ${f(m.balancer_near_rps_ratio, 2)}×; ` +
      `c=8 of 40 KB echoes beside K5's held sleeps: ${f(m.balancer_held_rps_ratio, 2)}×, its p99 ${
        f(m.balancer_held_c8_p99_ms, 1)
      } ms (unattacked ${f(m.balancer_big_c8_p99_ms, 1)})`,
  );
  return m;
}
