/**
 * Short time slices for the event loop's thread while it is mostly idle
 * (Linux 6.12+, FFI). The kernel's fair scheduler (EEVDF) gives a task that
 * asks for a shorter slice an earlier deadline, so when it wakes it runs
 * before tasks with longer ones, and may preempt the task running where it
 * wakes. A broker's one thread wakes for every batch its publishers send and
 * runs briefly: on a loaded machine each of those wake-ups otherwise waits
 * behind whatever else runs there, and reads nothing meanwhile (README,
 * Benchmarks, broker, stop 47: at 10,000 msgs/s its wake-ups by a
 * publisher's data waited 3.1 ms at the 99th percentile, 1.3 ms with 0.1 ms
 * slices; deliveries' p99 22.9 against 7.8 ms). Its share of the CPU stays
 * what it was, in smaller pieces: a thread that is busy most of the time
 * then switches more for nothing (flat out, about a tenth more CPU a
 * delivery), so once it wants a CPU (runs or waits to) more than half the
 * time it goes back to the kernel's default slice, and under a quarter asks
 * for short ones again (checked every CHECK_MS). Older kernels ignore the request; without FFI nothing is
 * asked. `DIST_SLICE_US=0` sets the kernel's default (a slice is inherited).
 */
import { libc } from "../wire/libc.ts";

/** The slice asked for while mostly idle (µs): the least the kernel takes. */
const SLICE_US = 100;
/** How often the thread's time on a CPU is read (ms). */
const CHECK_MS = 250;
/** Share of the time wanting a CPU past which the default slice comes back, and under which short ones do. */
const BUSY = 0.5, IDLE = 0.25;
/** `sched_setattr`'s number by architecture. */
const SYS_SCHED_SETATTR: Record<string, bigint> = { x86_64: 314n, aarch64: 274n };
/** `struct sched_attr`'s size; `sched_flags`: keep the policy (SCHED_BATCH stays). */
const ATTR_SIZE = 56, SCHED_FLAG_KEEP_POLICY = 0x08n;

/** Sets the calling thread's slice (0: the kernel's default): whether the kernel took it. */
type SetSlice = (us: number) => boolean;

function sliceSetter(): SetSlice | undefined {
  const nr = SYS_SCHED_SETATTR[Deno.build.arch];
  const lib = libc("syscall");
  if (nr === undefined || lib === null) return undefined;
  // The nice value is set again with the slice: the thread's own (field 19 of its stat).
  const stat = Deno.readTextFileSync("/proc/thread-self/stat");
  const nice = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[16]);
  if (!Number.isInteger(nice)) return undefined;
  const attr = new DataView(new ArrayBuffer(ATTR_SIZE));
  attr.setUint32(0, ATTR_SIZE, true);
  attr.setBigUint64(8, SCHED_FLAG_KEEP_POLICY, true);
  attr.setInt32(16, nice, true);
  const bytes = new Uint8Array(attr.buffer);
  return (us) => {
    attr.setBigUint64(24, BigInt(Math.round(us * 1000)), true); // sched_runtime, ns
    return lib.syscall(nr, 0n, bytes, 0n) === 0n;
  };
}

/** The calling thread's time on a CPU or waiting for one so far (ns): the time it wanted one. */
function wantedNs(): number {
  const [run, wait] = Deno.readTextFileSync("/proc/thread-self/schedstat").split(" ");
  return Number(run) + Number(wait);
}

/**
 * Asks for short slices for the calling thread while it is mostly idle (see
 * above); returns what stops it (and sets the default slice again).
 */
export function shortSlicesWhileIdle(): () => void {
  let set: SetSlice | undefined;
  try {
    const us = Number(Deno.env.get("DIST_SLICE_US") ?? SLICE_US);
    set = sliceSetter();
    if (set === undefined) return () => {};
    // A slice is inherited by threads and processes started from this one: 0 sets the default.
    if (!(us > 0)) {
      set(0);
      return () => {};
    }
    if (!set(us)) return () => {};
    let short = true, wanted = wantedNs(), at = performance.now();
    const timer = setInterval(() => {
      try {
        const nowWanted = wantedNs(), now = performance.now();
        const busy = (nowWanted - wanted) / 1e6 / (now - at);
        [wanted, at] = [nowWanted, now];
        if ((short ? busy > BUSY : busy < IDLE) && set!(short ? 0 : us)) short = !short;
      } catch {
        // /proc unreadable now (descriptors exhausted): the next check.
      }
    }, CHECK_MS);
    // It never keeps a process alive.
    Deno.unrefTimer(timer);
    return () => {
      clearInterval(timer);
      set!(0); // The default again: what this thread starts later does not inherit 0.1 ms.
    };
  } catch {
    return () => {}; // No libc.so.6 (musl), no /proc, or no such call.
  }
}
