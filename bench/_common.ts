/**
 * What every benchmark suite shares: the flags of `deno task bench`, medians,
 * a process's RSS, and the child processes suites start.
 */
import { type DistProcess, runDist, startDist } from "../tests/helpers/dist.ts";

/** Flags of `deno task bench`, as every suite gets them. */
export interface BenchFlags {
  /** One short round of everything (a smoke run, not a measurement). */
  quick: boolean;
  /** Rounds per suite (each figure is the median over them). */
  runs: number;
  /** Length of each throughput run, e.g. "5s". */
  duration: string;
  /** Connections of the wire suite's c=64 run. */
  connections: number;
}

/** A suite of `deno task bench`: prints its own lines, returns its medians. */
export type Suite = (flags: BenchFlags) => Promise<Record<string, number>>;

export function median(xs: number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[s.length >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

/** Resident set size of a process in bytes (0 when it is gone). */
export function rssOf(pid: number): number {
  try {
    const m = Deno.readTextFileSync(`/proc/${pid}/status`).match(/VmRSS:\s+(\d+) kB/);
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

/** Runs `dist client --bench --json …` against `address` and returns its summary. */
export async function clientBench(address: string, args: string[]) {
  const res = await runDist(
    ["client", "--connect", address, "--bench", "--json", "--log-level", "warning", ...args],
    { timeoutMs: 120_000 },
  );
  if (res.code !== 0) {
    throw new Error(`client bench failed (${res.code}): ${res.stderr}${res.stdout}`);
  }
  return JSON.parse(res.stdout.trim().split("\n").at(-1)!);
}

/** Whether an executable is on PATH (for comparisons with haproxy, nats-server…). */
export async function onPath(exe: string): Promise<boolean> {
  try {
    const out = await new Deno.Command("sh", { args: ["-c", `command -v ${exe}`] }).output();
    return out.success;
  } catch {
    return false;
  }
}

export const mib = (b: number): string => (b / 1024 / 1024).toFixed(1) + " MiB";
export const us = (ms: number): string => (ms * 1000).toFixed(0) + " µs";
export const round3 = (x: number): number => Math.round(x * 1000) / 1000;

/** Collects per-round figures and prints a round's line. */
export class Rounds {
  readonly rows: Record<string, number[]> = {};

  add(key: string, value: number): void {
    (this.rows[key] ??= []).push(value);
  }

  printRound(suite: string, round: number): void {
    console.log(
      `${suite} round ${round}: ` +
        Object.entries(this.rows).map(([k, v]) => `${k}=${round3(v.at(-1)!)}`).join(" "),
    );
  }

  medians(): Record<string, number> {
    return Object.fromEntries(Object.entries(this.rows).map(([k, v]) => [k, median(v)]));
  }
}

/** `n` dist servers s1…sn on free ports of 127.0.0.1: the backends the balancer suites share. */
export function startServers(n = 3): Promise<DistProcess[]> {
  return Promise.all(
    Array.from(
      { length: n },
      (_, i) => startDist(["server", "--port", "0", "--name", `s${i + 1}`]),
    ),
  );
}

/** The arguments of an RPC `dist balancer` on free ports spreading over `backends`. */
export function balancerArgs(backends: DistProcess[]): string[] {
  return [
    "balancer",
    "--port",
    "0",
    "--worker-port",
    "0",
    "--backends",
    backends.map((b) => b.address).join(","),
  ];
}

/**
 * CPU time a process has used, in µs: the sum of its threads' time on a
 * CPU from the scheduler (`/proc/PID/task/TID/schedstat`, nanoseconds), so
 * that a run of a few hundred milliseconds is measured to far better than
 * the 10 ms clock ticks of `/proc/PID/stat` (which gave 1.25 µs or 0.9 µs
 * for the same 200,000 deliveries: 25 ticks or 18). Threads that ended
 * before the read are not counted: both brokers keep theirs.
 */
export function cpuUs(pid: number | "self"): number {
  try {
    let ns = 0;
    for (const task of Deno.readDirSync(`/proc/${pid}/task`)) {
      try {
        ns += Number(
          Deno.readTextFileSync(`/proc/${pid}/task/${task.name}/schedstat`).split(" ")[0],
        );
      } catch {
        // The thread ended meanwhile.
      }
    }
    return ns / 1000;
  } catch {
    return NaN;
  }
}
