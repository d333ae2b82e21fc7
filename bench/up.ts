/**
 * `deno task bench up`: how long `dist up` takes to bring the embedded
 * default topology to "every instance ready", the resident memory of the
 * whole topology at that moment (launcher and children), and how long it
 * takes to stop. Target: ready within 3 s on this machine.
 *
 * The default topology uses fixed ports (broker 8000, binders 7000-7001,
 * servers 5557-5559, balancer 5556 and 8889): a round fails with a message
 * naming the port when one is taken.
 */
import { DEFAULT_TOPOLOGY, DEFAULT_TOPOLOGY_FILE, parseTopology } from "../config/mod.ts";
import { ROLES } from "../roles/mod.ts";
import { startUp } from "../tests/helpers/up.ts";
import { type BenchFlags, mib, Rounds, rssOf, type Suite } from "./_common.ts";

/** The ports of the default topology that are in use now. */
function busyPorts(): number[] {
  const topology = parseTopology(DEFAULT_TOPOLOGY, { file: DEFAULT_TOPOLOGY_FILE, roles: ROLES });
  const ports = topology.instances.flatMap((i) =>
    Object.entries(i.options).filter(([k, v]) => /[pP]ort$/.test(k) && typeof v === "number")
      .map(([, v]) => v as number)
  );
  return ports.filter((port) => {
    try {
      Deno.listen({ hostname: "127.0.0.1", port }).close();
      return false;
    } catch {
      return true;
    }
  });
}

/**
 * Proportional set size of a process in bytes (0 when it is gone): its RSS
 * with each shared page (the runtime's code, mapped by every copy) divided
 * among the processes sharing it, so that a sum over processes is the memory
 * they really take.
 */
function pssOf(pid: number): number {
  try {
    const m = Deno.readTextFileSync(`/proc/${pid}/smaps_rollup`).match(/^Pss:\s+(\d+) kB/m);
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

interface RoundResult {
  /** Seconds from spawning `dist up` to its "All N ready" line. */
  ready: number;
  /** The launcher's own figure (from its start to every instance ready). */
  launcher: number;
  rss: number;
  pss: number;
  stop: number;
  count: number;
}

/** One `dist up` of the default topology, stopped with SIGTERM once every instance is ready. */
async function round(): Promise<RoundResult> {
  const t0 = performance.now();
  const up = startUp([]);
  try {
    const [, count, launcher] = await up.waitFor(/All (\d+) ready in ([\d.]+) s/, 30_000);
    const ready = (performance.now() - t0) / 1000;
    const pids = [up.child.pid, ...up.pids()];
    const rss = pids.reduce((sum, pid) => sum + rssOf(pid), 0);
    const pss = pids.reduce((sum, pid) => sum + pssOf(pid), 0);
    const t1 = performance.now();
    const result = await up.stop();
    const stop = (performance.now() - t1) / 1000;
    if (result.code !== 0) throw new Error(`dist up exited ${result.code}: ${result.stderr}`);
    return { ready, launcher: Number(launcher), rss, pss, stop, count: Number(count) };
  } finally {
    await up.stop();
  }
}

export const run: Suite = async (flags: BenchFlags) => {
  const rounds = new Rounds();
  let count = 0;
  for (let i = 1; i <= flags.runs; i++) {
    const busy = busyPorts();
    if (busy.length > 0) {
      console.log(`up round ${i}: skipped: ports in use: ${busy.join(", ")}`);
      continue;
    }
    const r = await round();
    count = r.count;
    rounds.add("ready_s", r.ready);
    rounds.add("launcher_ready_s", r.launcher);
    rounds.add("rss_mib", r.rss / 1024 / 1024);
    rounds.add("pss_mib", r.pss / 1024 / 1024);
    rounds.add("stop_s", r.stop);
    rounds.printRound("up", i);
  }
  const m = rounds.medians();
  if (m.ready_s !== undefined) {
    const target = m.ready_s <= 3 ? "✔" : "✘";
    console.log(
      `up medians: ${count} instances ready in ${m.ready_s.toFixed(2)} s ` +
        `(${m.launcher_ready_s.toFixed(2)} s by the launcher's clock; target ≤ 3 s ${target}); ` +
        `RSS of the topology ${mib(m.rss_mib * 1024 * 1024)} summed over ${count + 1} processes ` +
        `(launcher included), PSS ${mib(m.pss_mib * 1024 * 1024)} (shared runtime pages counted ` +
        `once); stopped in ${m.stop_s.toFixed(2)} s`,
    );
  }
  return m;
};
