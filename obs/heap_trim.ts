/**
 * Gives memory the C heap holds freed back to the system. glibc keeps what
 * a flood's buffers used once they are freed (its mmap threshold rises to
 * the largest block freed, so later large buffers come from the heap, which
 * it gives back only from its top): after 120 publishes of 900 KB kept by
 * three sessions, RSS stayed 107 MiB above its start for 74 MiB counted;
 * `malloc_trim(0)` brought it to 82. One unref'd timer reads RSS and the
 * heap's free bytes (`mallinfo2`) twice a second and, once RSS has settled
 * (moved less than 1 MiB since the last reading) with 8 MiB or more free,
 * trims if RSS grew 8 MiB past what the last trim left or 16 MiB more lie
 * free than then; at most one trim each 2 s (a trim took 0.3–1.2 ms there;
 * what it gives back is faulted in again when reused). `mallinfo2` walks
 * every arena's free lists: 2–6 µs in a quiet process, 0.17 ms in a busy
 * broker, once 16 ms in a balancer with a fragmented heap (stop 48, l48), a
 * stall of every connection; so the next reading waits a thousand times
 * what the last one took (0.1 % of the loop at most), 500 ms at least.
 *
 * Only on Linux with glibc 2.33+ and `--allow-ffi` (granted, never prompted
 * for); elsewhere it does nothing.
 */
import { libc } from "../wire/libc.ts";

const MIB = 1024 * 1024;
/** How often the heap's free bytes are read (ms). */
const TICK_MS = 500;
/** Free bytes below which no trim is worth it. */
const WORTH = 8 * MIB;
/** RSS growth past what the last trim left that asks for the next one. */
const GROWN = 8 * MIB;
/** Free bytes past what the last trim left that ask for the next one. */
const FREED = 16 * MIB;
/** Ticks between two trims at least (2 s). */
const GAP_TICKS = 4;
/** The next reading of the free bytes waits this many times what the last one took. */
const SPACING = 1000;
/** `fordblks` (free bytes in the arenas): the ninth of `struct mallinfo2`'s ten size_t. */
const FORDBLKS = 8;

type Heap = { free(): number; trim(): void };

function loadHeap(): Heap | null {
  // Null where not glibc (musl has neither call), or too old a glibc.
  const lib = libc("heap");
  if (lib === null) return null;
  return {
    free: () => Number(new BigUint64Array(lib.mallinfo2().buffer)[FORDBLKS]),
    trim: () => void lib.malloc_trim(0n),
  };
}

/**
 * Starts the trimmer; returns what stops it. The timer is unref'd: it never
 * keeps a process alive.
 */
export function startHeapTrim(): () => void {
  const heap = loadHeap();
  if (heap === null) return () => {};
  let readAt = 0;
  const readFree = (): number => {
    const start = performance.now(), free = heap.free(), end = performance.now();
    readAt = end + (end - start) * SPACING;
    return free;
  };
  let leftRss = Deno.memoryUsage().rss, leftFree = readFree(), last = leftRss, ticks = 0;
  const timer = setInterval(() => {
    const rss = Deno.memoryUsage().rss, settled = Math.abs(rss - last) < MIB;
    last = rss;
    if (rss < leftRss) leftRss = rss;
    if (++ticks < GAP_TICKS || !settled || performance.now() < readAt) return;
    const free = readFree();
    if (free < leftFree) leftFree = free; // Reused since.
    if (free < WORTH || (rss <= leftRss + GROWN && free <= leftFree + FREED)) return;
    heap.trim();
    ticks = 0;
    last = leftRss = Deno.memoryUsage().rss;
    leftFree = readFree();
  }, TICK_MS);
  Deno.unrefTimer(timer);
  return () => clearInterval(timer);
}
