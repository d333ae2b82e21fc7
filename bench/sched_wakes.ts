/**
 * What a server's threads wait for a core (bench/broker_tail.ts's
 * `TAIL_SCHED=1`): `perf record` of the scheduler's switch and wake-up
 * tracepoints over the whole machine around one run, then, for every thread
 * of the server's process, each wait from a wake-up to running, by who woke
 * it (the bench's client threads, its own threads, anything else: another
 * process, a timer), and each wait after a preemption (switched out
 * runnable, until it runs again). Linux `perf` with tracepoints readable
 * (root, or perf_event_paranoid ≤ -1).
 */

/** A perf recording under way; `stop` ends it and reads it. */
export interface SchedTrace {
  stop(): Promise<string>;
}

/** Starts recording the switches and wake-ups of every CPU into `file`. */
export async function startSchedTrace(file: string): Promise<SchedTrace> {
  const child = new Deno.Command("perf", {
    args: [
      "record",
      "-q",
      "-e",
      "sched:sched_switch",
      "-e",
      "sched:sched_wakeup",
      "-a",
      "-o",
      file,
    ],
    stdout: "null",
    stderr: "piped",
  }).spawn();
  // perf opens its buffers before the first event is kept: let it.
  await new Promise((r) => setTimeout(r, 500));
  return {
    async stop() {
      child.kill("SIGINT");
      const { code, stderr } = await child.output();
      if (code !== 0 && code !== 130 && code !== 2) {
        throw new Error(
          `perf record: ${new TextDecoder("utf-8", { ignoreBOM: true }).decode(stderr)}`,
        );
      }
      const out = await new Deno.Command("perf", {
        args: ["script", "-i", file, "-F", "pid,tid,cpu,time,event,trace"],
        stdout: "piped",
        stderr: "null",
      }).output();
      await Deno.remove(file).catch(() => {});
      return new TextDecoder("utf-8", { ignoreBOM: true }).decode(out.stdout);
    },
  };
}

/** Waits (ms) by kind: woken by the bench's `client` threads, by the server's `own`, by `other`; `preempted`. */
export type Waits = Record<"client" | "own" | "other" | "preempted", number[]>;

const LINE = /^\s*(\d+)\/(\d+)\s+\[(\d+)\]\s+([\d.]+):\s+sched:(\w+):\s+(.*)$/;
const FIELD = /(\w+)=(\S+)/g;

/** The waits of `server`'s threads in a `perf script` text; `client`: the process whose threads are the clients. */
export function waitsOf(text: string, server: number, client: number): Waits {
  const group = new Map<number, number>();
  const events: [number, number, string, Map<string, string>][] = [];
  for (const line of text.split("\n")) {
    const m = LINE.exec(line);
    if (m === null) continue;
    const tid = Number(m[2]);
    group.set(tid, Number(m[1]));
    const fields = new Map<string, string>();
    for (const f of m[6].matchAll(FIELD)) fields.set(f[1], f[2]);
    events.push([tid, Number(m[4]), m[5], fields]);
  }
  const waits: Waits = { client: [], own: [], other: [], preempted: [] };
  // Per thread of the server: since when it waits, and in which list it goes.
  const since = new Map<number, [number, keyof Waits]>();
  for (const [tid, t, event, f] of events) {
    if (event === "sched_switch") {
      const prev = Number(f.get("prev_pid")), next = Number(f.get("next_pid"));
      if (group.get(prev) === server && f.get("prev_state")?.startsWith("R")) {
        since.set(prev, [t, "preempted"]);
      }
      const w = since.get(next);
      if (w !== undefined) {
        waits[w[1]].push((t - w[0]) * 1e3);
        since.delete(next);
      }
    } else if (event === "sched_wakeup") {
      const woken = Number(f.get("pid"));
      if (group.get(woken) !== server || since.has(woken)) continue;
      const by = group.get(tid);
      since.set(woken, [t, by === server ? "own" : by === client ? "client" : "other"]);
    }
  }
  return waits;
}

/** The `q` quantile of `xs` (sorted in place). */
export function quantile(xs: number[], q: number): number {
  if (xs.length === 0) return 0;
  xs.sort((a, b) => a - b);
  return xs[Math.min(xs.length - 1, Math.ceil(q * xs.length) - 1)];
}
